"""An ImageNet-sized folder index: listing time, time to the first batch, memory per worker count.

    python benchmarks/index_scale.py [--samples 1281167] [--classes 1000] [--dir DIR]

The folder holds ``--samples`` hard links (ImageNet's train split: 1,281,167 in 1000 classes;
``memory_epochs.build``) to a few small JPEGs, so building it costs directory entries, not data. Each figure comes from a
fresh process that has imported torch already (as a training script has):

- listing: ``FolderSource(root, index_file=None)`` (one scandir per class folder, a sort);
- the index file written, then read back (``root/.fastload-index.npz``);
- time to the first batch: from ``fl.loader(root, ...)`` to the first batch in hand, with the
  index file present (2 workers, batch 256, RandomResizedCrop 64);
- PSS summed over the training process and its workers, for 1, 2 and 4 workers, after 30
  batches, on this index and on a 1000-sample one: the difference is what the index costs,
  and it should not grow with the workers (the arrays are shared after fork, never written).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(root: Path, samples: int, classes: int) -> Path:
    from memory_epochs import build as link_folder

    data = root / f"data-{samples}"
    if not (data / ".complete").exists():
        link_folder(root, samples, classes, name=data.name)
        (data / ".complete").touch()
    time.sleep(2.1)  # an index of a tree changed < 2 s ago is not saved
    return data


def child(kind: str, root: str, workers: int) -> dict:
    import torch  # noqa: F401 - a training process has it loaded already

    import fastload as fl
    from fastload.tools.bench.memory import tree_memory

    if kind == "list":
        start = time.perf_counter()
        source = fl.FolderSource(root, index_file=None)
        return {"seconds": time.perf_counter() - start, "samples": len(source)}
    if kind == "index":
        Path(root, ".fastload-index.npz").unlink(missing_ok=True)
        start = time.perf_counter()
        fl.FolderSource(root)
        written = time.perf_counter() - start
        start = time.perf_counter()
        source = fl.FolderSource(root)
        return {"write_seconds": written, "read_seconds": time.perf_counter() - start,
                "samples": len(source),
                "index_bytes": Path(root, ".fastload-index.npz").stat().st_size}
    pipeline = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(64), fl.RandomFlip(), fl.Normalize())
    start = time.perf_counter()
    loader = fl.loader(root, pipeline, 256, num_workers=workers, seed=0, shuffle=True)
    batches = (batch for _ in range(1000) for batch in loader)  # epochs, for the small index
    next(batches)
    first = time.perf_counter() - start
    if kind == "first":
        return {"seconds": first}
    for _ in range(30):
        next(batches)
    rss, pss = tree_memory(os.getpid())
    return {"first_batch_seconds": first, "rss": rss, "pss": pss}


def run(kind: str, root: Path, workers: int = 2) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(root), str(workers)],
                         capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_281_167)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dir", help="where to build the folders (kept for re-runs; default: "
                        "a temporary folder)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, root, workers = args.child
        print(json.dumps(child(kind, root, int(workers))))
        sys.stdout.flush()
        os._exit(0)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.dir or tmp)
        start = time.perf_counter()
        big = build(base, args.samples, args.classes)
        small = build(base, 1000, args.classes)
        print(f"folders ready in {time.perf_counter() - start:.0f} s: {big}", flush=True)
        for _ in range(2):
            print("listing without the index file:", run("list", big), flush=True)
        print("index file:", run("index", big), flush=True)
        run("index", small)
        firsts = [run("first", big)["seconds"] for _ in range(5)]
        print(f"time to the first batch with the index file, 5 fresh processes: "
              f"{', '.join(f'{s:.2f}' for s in firsts)} s", flush=True)
        rows = []
        for workers in (1, 2, 4):
            b, s = run("memory", big, workers), run("memory", small, workers)
            rows.append((workers, b["pss"], s["pss"]))
            print(f"{workers} workers: PSS {b['pss'] / 2**20:.0f} MiB with {args.samples} "
                  f"samples, {s['pss'] / 2**20:.0f} MiB with 1000: the index costs "
                  f"{(b['pss'] - s['pss']) / 2**20:.0f} MiB", flush=True)
        costs = [b - s for _, b, s in rows]
        print(f"index cost across 1/2/4 workers: spread {100 * (max(costs) / min(costs) - 1):.1f}%")


if __name__ == "__main__":
    main()
