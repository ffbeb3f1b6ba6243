"""Peak memory across processes, epoch by epoch, on a 100k-sample index.

    python benchmarks/memory_epochs.py [--samples 100000] [--epochs 3] [--workers 2]

The folder holds N hard links to a few small JPEGs (what grows with N is the index, which
fastload keeps in numpy arrays so forked workers do not copy it page by page). Prints one line
per epoch: images/s, peak RSS and PSS summed over the main process and its workers, and the
growth from epoch 1 to the last.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import fastload as fl
from fastload.tools.bench.memory import TreeMemory
from fastload.tools.synthetic import make_image_folder


def build(root: Path, samples: int, classes: int = 100, name: str = "data") -> Path:
    """``root/name``: ``samples`` hard links in ``classes`` folders to a few small JPEGs."""
    count = samples // 30000 + 16  # ext4 allows 65000 links to a file
    seeds = make_image_folder(root / f"seeds-{count}", count, classes=1, size=(96, 72))
    files = sorted(seeds.rglob("*.jpg"))
    data = root / name
    for c in range(classes):
        (data / f"class_{c:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(samples):
        target = data / f"class_{i % classes:03d}" / f"img_{i:07d}.jpg"
        if not target.exists():
            os.link(files[i % len(files)], target)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", help="where to build the folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = build(Path(args.dir or tmp), args.samples)
        pipeline = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(64), fl.RandomFlip(), fl.Normalize())
        peaks = []
        with fl.loader(data, pipeline, 256, num_workers=args.workers, seed=0, shuffle=True) as loader:
            for epoch in range(args.epochs):
                with TreeMemory(interval=0.5, pss_every=4) as mem:
                    start, n = time.perf_counter(), 0
                    for _, labels in loader:
                        n += len(labels)
                seconds = time.perf_counter() - start
                peaks.append((mem.peak_rss, mem.peak_pss))
                print(f"epoch {epoch}: {n} images, {n / seconds:.0f} images/s, peak RSS "
                      f"{mem.peak_rss / 2**20:.0f} MiB, peak PSS {mem.peak_pss / 2**20:.0f} MiB",
                      flush=True)
        first, last = peaks[0], peaks[-1]
        print(f"growth epoch 1 -> {args.epochs}: RSS {100 * (last[0] / first[0] - 1):+.1f}%, "
              f"PSS {100 * (last[1] / first[1] - 1):+.1f}%")


if __name__ == "__main__":
    main()
