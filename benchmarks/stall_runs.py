"""Wait per step at 70% of the loader's capacity, over many runs, on real photographs.

    python benchmarks/stall_runs.py DATA [--runs 10] [--steps 320] [--load 0.7]

DATA: a folder or converted shards (e.g. ``real_photos.py``'s set). First the capacity: three
``fastload bench`` runs with no step (steady images/s, median). Then ``--runs`` runs of
``fastload bench --step-ms S --steps N`` with S the step at which the training loop asks for
``--load`` of that capacity (torch backend, 2 workers, batch 64, imagenet_train). Each run's
wait percentiles are taken after its warm-up iterations (2 x workers + 2); the table lists
them, and how many runs had p99 under 2 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def bench(data: str, step_ms: float, steps: int, epochs: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "fastload", "bench", data, "--backend", "torch", "--no-baseline",
           "--workers", "2", "--batch-size", "64", "--step-ms", f"{step_ms:.2f}",
           "--epochs", str(epochs), "--json", str(out)]
    if steps:
        cmd += ["--steps", str(steps)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1200)
    return json.loads(out.read_text())["runs"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--load", type=float, default=0.7)
    parser.add_argument("--json", help="write every run here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        capacity = statistics.median(
            bench(args.data, 0, 0, 3, report)["steady_images_per_s"] for _ in range(3))
        step_ms = 64 / (args.load * capacity) * 1e3
        print(f"capacity {capacity:.0f} img/s -> step {step_ms:.1f} ms per batch of 64 at "
              f"{args.load:.0%}", flush=True)
        runs = []
        for k in range(args.runs):
            r = bench(args.data, step_ms, args.steps, 1000, report)
            runs.append(r)
            w = r["wait_ms"]
            print(f"run {k + 1}: {len(r['waits_ms'])} iterations, wait p50 {w['p50']:.2f} ms, "
                  f"p90 {w['p90']:.2f}, p99 {w['p99']:.2f}, max {w['max']:.2f}, stalled "
                  f"{r['stalled_fraction']:.0%}", flush=True)
    good = sum(r["wait_ms"]["p99"] < 2.0 for r in runs)
    print(f"p99 < 2 ms in {good} of {len(runs)} runs; median p99 "
          f"{statistics.median(r['wait_ms']['p99'] for r in runs):.2f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"capacity": capacity, "step_ms": step_ms,
                                               "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
