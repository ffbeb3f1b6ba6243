"""Soak: run the test suite (or part of it) N times in a row, each under a time limit; on a
stall, dump the stack of every process of the run before killing it (py-spy for each process
when installed; the pytest process's threads through faulthandler on SIGUSR1 either way, into
the run's log). Writes one JSON line per run, and summary.json, under --out.

    python benchmarks/soak.py --runs 30 --limit 900                 # the full suite
    python benchmarks/soak.py --runs 30 --limit 300 -- tests/test_reliability.py tests/test_loader.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastload.tools.bench.memory import descendants  # noqa: E402

# Registered in every run's pytest process: SIGUSR1 prints all threads' stacks to the run's
# log (a duplicate of stderr: pytest redirects fd 2 itself while tests run).
FAULTHANDLER = ("import faulthandler, os, signal; faulthandler.register(signal.SIGUSR1, "
                "file=os.fdopen(os.dup(2), 'w'), all_threads=True)")


def dump_stacks(pid: int, folder: Path) -> list[str]:
    """Every process of the run's tree: py-spy's dump (Python and native frames) when py-spy is
    installed; the pytest process also prints its threads through faulthandler."""
    folder.mkdir(parents=True, exist_ok=True)
    pids = descendants(pid)
    spy = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                       os.environ.get("PATH", "")]))
    for p in pids:
        if spy:
            out = subprocess.run([spy, "dump", "--native", "--pid", str(p)], capture_output=True,
                                 text=True, timeout=60)
            (folder / f"{p}.txt").write_text(out.stdout + out.stderr)
    try:
        os.kill(pid, signal.SIGUSR1)
        time.sleep(1)
    except ProcessLookupError:
        pass
    return [str(p) for p in pids]


def one_run(k: int, args: argparse.Namespace, out: Path) -> dict:
    log = out / f"run-{k:03d}.log"
    command = [sys.executable, "-c", f"{FAULTHANDLER}; import sys, pytest; "
               f"sys.exit(pytest.main({['-q', '-p', 'no:cacheprovider', *args.pytest]!r}))"]
    start = time.monotonic()
    with open(log, "w") as stream:
        proc = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=Path(__file__).resolve().parents[1])
        try:
            code = proc.wait(timeout=args.limit)
            stalled: list[str] = []
        except subprocess.TimeoutExpired:
            stalled = dump_stacks(proc.pid, out / f"run-{k:03d}-stacks")
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    return {"run": k, "seconds": round(time.monotonic() - start, 1), "exit": code,
            "stalled": bool(stalled), "stacks_of": stalled, "last_line": tail[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--limit", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--out", default="soak-logs")
    parser.add_argument("pytest", nargs="*", default=["tests"],
                        help="pytest arguments after --, default: tests")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for k in range(args.runs):
        result = one_run(k, args, out)
        results.append(result)
        print(json.dumps(result), flush=True)
    clean = sum(r["exit"] == 0 for r in results)
    seconds = sorted(r["seconds"] for r in results)
    summary = {"runs": args.runs, "clean": clean, "stalled": sum(r["stalled"] for r in results),
               "median_s": seconds[len(seconds) // 2], "max_s": seconds[-1],
               "pytest": args.pytest}
    (out / "summary.json").write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    print(json.dumps(summary))
    sys.exit(0 if clean == args.runs else 1)


if __name__ == "__main__":
    main()
