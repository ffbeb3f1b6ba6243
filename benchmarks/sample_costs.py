"""Where a sample's CPU time goes in the torch backend's worker, stage by stage (issue 31).

    python benchmarks/sample_costs.py [--images 2000] [--format tfrecord|folder] [--rounds 3]

One process, one core (torch threads 1, as in a DataLoader worker), the real photographs of
``real_photos.py`` (converted by ``fastload convert`` for ``--format tfrecord``), the
``imagenet_train(224)`` pipeline (RandomResizedCrop + flip + normalize + RandomErasing 0.25),
batch 64. Each stage's function is wrapped with a timer (``time.perf_counter_ns``, ~0.1 us a
call); "the rest" is the batch's wall time less the stages: the Python of the per-sample loop,
``locate``'s string, the plan's dataclass, ``read_sample``'s frame. The ceiling column decodes
the same bytes whole (simplejpeg) and does nothing else. Per-sample microseconds, the median
of ``--rounds`` passes over the set.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

BATCH = 64


def timed(table: dict, name: str, fn):
    def run(*args, **kwargs):
        start = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            table[name] += time.perf_counter_ns() - start
    return run


def one_pass(source, pipeline) -> dict:
    import torch

    from fastload.backends.finisher import CpuFinisher
    from fastload.backends.torch import imaging, producer
    from fastload.batch import BatchTask
    from fastload.ops import geometry

    table: dict = defaultdict(int)
    patches = [(producer, "read_header"), (producer, "plan_sample"), (imaging, "decode_box"),
               (imaging, "decode_rgb"), (imaging, "resample_into")]
    saved = [(module, name, getattr(module, name)) for module, name in patches]
    saved.append((producer.SampleRngs, "get", producer.SampleRngs.get))
    read = source.read
    try:
        for module, name, fn in saved:
            setattr(module, name, timed(table, "SampleRngs.get" if name == "get" else name, fn))
        source.read = timed(table, "source.read", read)
        finisher = CpuFinisher(pipeline)
        out = torch.empty((BATCH, 3, *pipeline.output_size), dtype=torch.float32)
        count = 0
        for first in range(0, len(source) - BATCH + 1, BATCH):
            idx = np.arange(first, first + BATCH, dtype=np.int64)
            task = BatchTask(0, 0, idx, idx.copy(), np.zeros(BATCH, bool))
            start = time.perf_counter_ns()
            host = producer.render_batch(source, pipeline, task, geometry.is_random(pipeline))
            middle = time.perf_counter_ns()
            finisher.finish(host.images, out, host)
            end = time.perf_counter_ns()
            table["render_batch (all)"] += middle - start
            table["normalize + erase (a batch / 64)"] += end - middle
            count += BATCH
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)
        source.read = read
    stages = ("source.read", "read_header", "SampleRngs.get", "plan_sample", "decode_box",
              "decode_rgb", "resample_into")
    result = {name: table[name] / count / 1000 for name in stages}
    result["the rest of render_batch"] = (table["render_batch (all)"]
                                          - sum(table[n] for n in stages)) / count / 1000
    result["normalize + erase (a batch / 64)"] = table["normalize + erase (a batch / 64)"] / count / 1000
    result["total"] = (table["render_batch (all)"]
                       + table["normalize + erase (a batch / 64)"]) / count / 1000
    return result


def ceiling(source) -> float:
    from fastload.backends.torch.imaging import decode_rgb

    start = time.perf_counter_ns()
    for i in range(len(source)):
        decode_rgb(source.read(i)[0], "ceiling")
    return (time.perf_counter_ns() - start) / len(source) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--format", choices=("tfrecord", "folder"), default="tfrecord")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", help="keep the photo set here (default: a temporary folder)")
    args = parser.parse_args()
    import torch

    import fastload as fl
    from fastload.tools.convert import convert

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from real_photos import make_photo_folder

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data or tmp)
        folder = data / "folder"
        if not folder.exists():
            made, _ = make_photo_folder(data / "folder-tmp", args.images, classes=10)
            made.rename(folder)
        where = folder
        if args.format == "tfrecord":
            where = data / "tfrecord"
            if not where.exists():
                convert(folder, where, shards=8)
        source = fl.open_source(where)
        pipeline = fl.presets.imagenet_train(224)
        passes = [one_pass(source, pipeline) for _ in range(args.rounds)]
        ceilings = [ceiling(source) for _ in range(args.rounds)]
    print(f"per sample, microseconds ({args.format}, {len(source)} real photographs, one core, "
          f"median of {args.rounds} passes)")
    print("| stage | us |")
    print("|---|---|")
    for name in passes[0]:
        print(f"| {name} | {statistics.median(p[name] for p in passes):.1f} |")
    print(f"| ceiling: the whole decode alone | {statistics.median(ceilings):.1f} |")


if __name__ == "__main__":
    main()
