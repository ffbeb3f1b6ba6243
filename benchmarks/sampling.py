"""Sampling and mixing costs (issue 27).

1. Building one epoch's order for N samples: the uniform shuffle (a permutation), weighted
   draws with and without replacement, class balance (1000 classes), a three-part mixture;
   median seconds of 5, and the peak of memory allocated while building (tracemalloc), in
   bytes per sample.
2. Loader throughput with weighted draws against the uniform shuffle on the same images:
   RandomResizedCrop 224 + flip + normalize, batch 64, 2 workers, one epoch each (images per
   second after the first batch), in one process after a warm-up epoch, 5 rounds, which one
   goes first alternating; the ratio's median.

    python benchmarks/sampling.py --samples 10000000 --photos DIR [--rounds 5]

``--photos``: an image folder (``benchmarks/real_photos.py DIR`` makes one); without it, 2000
synthetic images are generated into ``.fastload-synthetic-sampling``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fastload as fl  # noqa: E402
from fastload.order.mixture import MixtureOrder, counts  # noqa: E402
from fastload.order.sampling import resolve  # noqa: E402
from fastload.order.sharding import permutation  # noqa: E402


def timed(make, rounds: int) -> tuple[float, float]:
    """(median seconds, peak bytes allocated) of ``make()`` over ``rounds`` calls."""
    seconds = []
    for k in range(rounds):
        tracemalloc.start() if k == 0 else None
        start = time.perf_counter()
        make(k)
        seconds.append(time.perf_counter() - start)
        if k == 0:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return statistics.median(seconds), peak


def orders(n: int, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    weights = rng.random(n) + 0.5
    labels = rng.integers(0, 1000, n)
    weighted = resolve(fl.Weighted(weights), n, lambda: None)
    without = resolve(fl.Weighted(weights, replacement=False), n, lambda: None)
    balanced = resolve(fl.ClassBalanced(), n, lambda: labels)
    mix = MixtureOrder((n // 2, n * 3 // 10, n - n // 2 - n * 3 // 10),
                       tuple(counts([0.5, 0.3, 0.2], n)))
    cases = {"uniform shuffle (permutation)": lambda k: permutation(n, 0, k),
             "Weighted, with replacement": lambda k: weighted.order(0, k),
             "Weighted, without replacement": lambda k: without.order(0, k),
             "ClassBalanced (1000 classes)": lambda k: balanced.order(0, k),
             "Mix of 3 (50/30/20%)": lambda k: mix.order(0, k)}
    out = {}
    for name, make in cases.items():
        seconds, peak = timed(make, rounds)
        out[name] = {"seconds": round(seconds, 3), "peak_bytes_per_sample": round(peak / n, 1)}
        print(f"{name:34s} {seconds:6.3f} s   peak {peak / n:5.1f} B/sample", flush=True)
    return out


def images_per_s(folder: Path, sampling, size: int) -> float:
    pipe = fl.presets.imagenet_train(224)
    kw = {"sampling": sampling} if sampling is not None else {"shuffle": True}
    with fl.loader(folder, pipe, 64, num_workers=2, device="cpu", **kw) as loader:
        it = iter(loader)
        next(it)  # workers started, first batch made: not part of the figure
        start = time.perf_counter()
        count = sum(len(b[1]) for b in it)
        return count / (time.perf_counter() - start)


def throughput(folder: Path, rounds: int) -> dict:
    size = len(fl.FolderSource(folder))
    weights = np.random.default_rng(1).random(size) + 0.5
    ratios, rates = [], {"uniform": [], "weighted": []}
    images_per_s(folder, None, size)  # warm-up: the page cache, the first workers
    for k in range(rounds):
        if k % 2:  # alternate which goes first
            weighted = images_per_s(folder, fl.Weighted(weights), size)
            uniform = images_per_s(folder, None, size)
        else:
            uniform = images_per_s(folder, None, size)
            weighted = images_per_s(folder, fl.Weighted(weights), size)
        rates["uniform"].append(uniform)
        rates["weighted"].append(weighted)
        ratios.append(weighted / uniform)
        print(f"round {k}: uniform {uniform:7.1f} img/s, weighted {weighted:7.1f} img/s, "
              f"ratio {weighted / uniform:.3f}", flush=True)
    return {"images": size, "ratio_median": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "uniform_img_s": [round(r, 1) for r in rates["uniform"]],
            "weighted_img_s": [round(r, 1) for r in rates["weighted"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = {"orders": orders(args.samples, args.rounds)}
    folder = args.photos
    if folder is None:
        from fastload.tools.synthetic import make_image_folder

        folder = make_image_folder(Path(".fastload-synthetic-sampling"), 2000, classes=10)
    result["throughput"] = throughput(folder, args.rounds)
    print(f"weighted / uniform throughput, median of {args.rounds}: "
          f"{result['throughput']['ratio_median']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
