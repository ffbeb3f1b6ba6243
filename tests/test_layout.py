"""The package layout: each part imports only the parts below it (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastload"

#: Bottom to top. A part may import its own layer's other modules and every layer below; parts
#: that share a layer are independent of each other (the two engines, ops and order, ...).
LAYERS = [
    {"errors", "per_process", "file_lock", "_jpeg", "_kernels", "batch"},
    {"formats", "image_info", "target_info", "ops", "order"},
    {"sources", "options", "device"},
    {"backends (shared)"},
    {"backends.torch", "backends.dali"},
    {"backends (selection)"},
    {"loading"},
    {"lightning"},
    {"fastload (facade)"},
    {"tools"},
    {"__main__"},
]
RANK = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str:
    """The layer part a dotted module name belongs to."""
    names = module.split(".")[1:]
    if not names:
        return "fastload (facade)"
    if names[0] == "backends":
        if len(names) == 1:
            return "backends (selection)"
        return f"backends.{names[1]}" if names[1] in ("torch", "dali") else "backends (shared)"
    return names[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every fastload module ``path`` imports, at module level or inside a function."""
    module, is_package = module_name(path), path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("fastload")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("fastload"):
                continue
            # ``from . import x``: x may be a module (or C extension) of that package
            folder = PACKAGE.parent / target.replace(".", "/")
            found |= {f"{target}.{alias.name}" if any(folder.glob(f"{alias.name}.*"))
                      or (folder / alias.name).is_dir() else target for alias in node.names}
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_layer():
    """A new top-level module or package is placed in LAYERS (and docs/architecture.md) on purpose."""
    parts = {part_of(module_name(path)) for path in MODULES}
    parts |= {part_of(f"fastload.{p.name.split('.')[0]}") for p in PACKAGE.glob("*.c")}
    assert parts - set(RANK) == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_a_module_imports_only_its_own_layer_and_below(path):
    here = part_of(module_name(path))
    for target in imported(path):
        there = part_of(target)
        assert RANK[there] < RANK[here] or there == here, (
            f"{module_name(path)} ({here}, layer {RANK[here]}) imports {target} "
            f"({there}, layer {RANK[there]})")


def test_the_top_level_holds_a_few_modules_beside_the_packages():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 12, modules


def test_the_layer_check_sees_relative_lazy_and_package_imports():
    """The checker itself: it resolves each import form the package uses."""
    engine = PACKAGE / "backends" / "torch" / "producer.py"
    assert "fastload.backends.torch.imaging" in imported(engine)  # from .imaging import ...
    assert "fastload.errors" in imported(engine)                  # from ... import errors
    assert "fastload._jpeg" in imported(PACKAGE / "backends" / "torch" / "imaging.py")
    selection = imported(PACKAGE / "backends" / "__init__.py")
    assert "fastload.backends.dali.producer" in selection         # inside a function
    assert part_of("fastload.backends.tail") == "backends (shared)"
    assert RANK["backends.torch"] > RANK["backends (shared)"]
