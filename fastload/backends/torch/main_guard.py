"""Worker processes that re-run the user's script: found before any worker starts.

With the ``spawn`` or ``forkserver`` start method (the torch backend's when DALI is loaded),
each new process imports the main script again as ``__mp_main__``. Code at its top level
that is not under ``if __name__ == "__main__":`` then runs again in every worker, and a loader
made there starts workers of its own: Python's bootstrapping error, three times over. This
finds a loader made by such code, from the script's syntax tree, and names the fix.
"""

from __future__ import annotations

import ast
import sys
from typing import Any, Optional

from ...errors import SpecError


def unguarded_call_line() -> Optional[int]:
    """The line of the main script's top-level statement that is making a loader (directly
    or through functions it calls) outside an ``if __name__ == "__main__":`` block, or None
    (inside the guard; no script file: an interactive session, ``python -c``, a notebook)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or not path.endswith(".py"):
        return None
    frame, line = sys._getframe(1), None
    while frame is not None:  # the script's top-level statement running now, if any
        if frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            end = getattr(node, "end_lineno", None) or line
            if node.lineno <= line <= end:
                return None
    return line


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def check_main_guard(context: Any, num_workers: int) -> None:
    """Workers that start by re-running the main script (spawn, forkserver) would make this
    loader again in each of them if it is made by the script's unguarded top-level code: say
    so now, before any worker starts, with the fix."""
    method = context if isinstance(context, str) else (
        context.get_start_method() if context is not None else "fork")
    if method not in ("spawn", "forkserver"):
        return
    line = unguarded_call_line()
    if line is None:
        return
    why = ("DALI is loaded in this process, so they start from a fork server"
           if "nvidia.dali" in sys.modules and method == "forkserver" else
           f"multiprocessing_context={method!r}")
    raise SpecError(
        f"{sys.modules['__main__'].__file__}:{line}: fastload.loader(..., num_workers="
        f"{num_workers}) runs at the top level of the script, outside "
        f"`if __name__ == '__main__':`. Its worker processes re-run the script ({why}), and "
        "each would make the loader again. Put the training code under "
        "`if __name__ == '__main__':` (or in a main() called from there), or use num_workers=0.")
