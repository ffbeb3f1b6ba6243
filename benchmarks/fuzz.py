"""Random exploration of the property tests: the suite runs them derandomized (the same
examples every run, so CI fails only when the code changes); this runs them with fresh seeds
and records each seed, so whatever it finds can be replayed and kept as an ``@example``.

    python benchmarks/fuzz.py --rounds 20                   # tests/test_fuzz.py, 20 seeds
    python benchmarks/fuzz.py --rounds 5 --seed 1234 -- tests/test_fuzz.py -k region
    python -m pytest tests/test_fuzz.py --hypothesis-profile=explore --hypothesis-seed=SEED

Writes one JSON line per round (seed, exit code, passed/failed counts, the falsifying examples'
lines) and a summary to ``--out`` (default benchmarks/results/fuzz-<date>.jsonl).
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_round(seed: int, targets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "--hypothesis-profile=explore", f"--hypothesis-seed={seed}", *targets]
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    text = out.stdout + out.stderr
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|errors?)", text)}
    falsifying = [line.strip() for line in text.splitlines()
                  if "Falsifying example" in line or line.strip().startswith(("changes=", "cut=",
                                                                               "buf=", "data="))]
    return {"seed": seed, "returncode": out.returncode, "seconds": round(time.perf_counter()
                                                                         - started, 1),
            **counts, "falsifying": falsifying, "command": " ".join(cmd[1:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="seeds to try (default: 10)")
    parser.add_argument("--seed", type=int, default=None,
                        help="first seed (default: random); round k uses seed + k")
    parser.add_argument("--out", type=Path, default=None, help="JSON lines file to append to")
    parser.add_argument("targets", nargs="*", default=["tests/test_fuzz.py"],
                        help="pytest arguments (default: tests/test_fuzz.py)")
    args = parser.parse_args(argv)
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    out = args.out or ROOT / "benchmarks" / "results" / f"fuzz-{datetime.date.today()}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    failed = 0
    with open(out, "a") as log:
        for k in range(args.rounds):
            record = {"commit": commit, **run_round(first + k, args.targets)}
            failed += record["returncode"] != 0
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(f"seed {record['seed']}: rc {record['returncode']}, "
                  f"{record.get('passed', 0)} passed, {record.get('failed', 0)} failed, "
                  f"{record['seconds']} s", flush=True)
            for line in record["falsifying"]:
                print("   ", line)
    print(f"{args.rounds} rounds from seed {first}, {failed} failed; log: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
