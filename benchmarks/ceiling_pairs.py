"""The torch backend against the decode-only ceiling, measured in adjacent pairs.

    python benchmarks/ceiling_pairs.py [--samples 1024] [--pairs 7] [--pipeline train|eval]
                                       [--photos synthetic|real] [--format folder|tfrecord|lmdb]
                                       [--no-restarts] [--seed S] [--shorter LO HI]
                                       [--quality LO HI]

``--photos real``: real photographs (``real_photos.py``: recut from the photos shipped in
scikit-image and scikit-learn) instead of the synthetic generator. ``--format``: both sides read
the set converted by ``fastload convert`` (restart markers in the JPEGs unless
``--no-restarts``) instead of the folder: the ceiling decodes the same bytes whole.

On a shared VM the speed of the whole machine drifts by 10-30% within minutes, and
pytest-benchmark runs all rounds of one benchmark before the next: the two sides of a ratio
can land in different weather. Here each pair runs the ceiling and the torch backend back to
back, each in a fresh process (one warm-up epoch, then ``--epochs`` timed epochs, 2 workers,
batch 64), alternating which goes first; the ratio of each pair is reported, and their median.
Each side's CPU time per image (user + system, the process and its workers) is reported too:
on 2 busy cores throughput is ~2 / CPU per image, and CPU time does not count the time the VM
gives to others, so its ratio scatters far less than the images/s one.
The ceiling decodes the same files whole with simplejpeg (libjpeg-turbo) in DataLoader workers
and does nothing else, in one DataLoader pass over all the epochs: no refill at an epoch start
(fastload's loader has none either). ``test_loader.py``'s ceiling restarts each epoch, which
costs it a refill per epoch and so flatters the ratio a little.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKERS, BATCH = 2, 64


class DecodeOnly:
    """Sample ``i`` is file ``i % len(source)``: several epochs in one DataLoader pass."""

    def __init__(self, source, epochs):
        self.source, self.epochs = source, epochs

    def __len__(self):
        return len(self.source) * self.epochs

    def __getitem__(self, index):
        from fastload.backends.torch.imaging import decode_rgb

        decode_rgb(self.source.read(index % len(self.source))[0], "bench")
        return 1


def run_child(kind: str, folder: str, pipeline: str, epochs: int) -> None:
    import torch

    import fastload as fl

    if kind == "ceiling":  # one pass over all epochs: no refill at epoch starts, like fastload's
        source = fl.open_source(folder)
        batches = iter(torch.utils.data.DataLoader(DecodeOnly(source, epochs + 1),
                                                   batch_size=BATCH, num_workers=WORKERS))
        sizes = (len(b) for b in batches)
    else:
        preset = fl.presets.imagenet_train(224) if pipeline == "train" else fl.presets.imagenet_eval(224)
        loader = fl.loader(folder, preset, BATCH, num_workers=WORKERS, backend="torch", shuffle=True)
        source = loader.source
        sizes = (len(labels) for _ in range(epochs + 1) for _, labels in loader)
    warm = 0
    for size in sizes:  # the first epoch: workers started, files in the page cache
        warm += size
        if warm >= len(source):
            break
    start, cpu = time.perf_counter(), tree_cpu()
    images = sum(sizes)
    seconds, cpu = time.perf_counter() - start, tree_cpu() - cpu
    print(json.dumps({"images_per_s": images / seconds, "cpu_ms_per_image": 1e3 * cpu / images}))


def tree_cpu() -> float:
    """CPU seconds (user + system) of this process, its live descendants (the workers) and its
    children that ended (the ceiling's DataLoader joins its workers at the end)."""
    import os
    import resource

    from fastload.tools.bench.memory import descendants

    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    tick, total = os.sysconf("SC_CLK_TCK"), (ended.ru_utime + ended.ru_stime) * os.sysconf("SC_CLK_TCK")
    for pid in [os.getpid(), *descendants(os.getpid())]:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def measure(kind: str, folder: str, pipeline: str, epochs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, folder, pipeline, str(epochs)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pipeline", choices=("train", "eval"), default="train")
    parser.add_argument("--photos", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--format", choices=("folder", "tfrecord", "lmdb"), default="folder")
    parser.add_argument("--no-restarts", dest="restarts", action="store_false")
    parser.add_argument("--seed", type=int, default=0, help="--photos real: the set's seed")
    parser.add_argument("--shorter", type=float, nargs=2, default=(330, 500),
                        help="--photos real: the range of the shorter side")
    parser.add_argument("--quality", type=int, nargs=2, default=(90, 90),
                        help="--photos real: the range of JPEG qualities")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder, pipeline, epochs = args.child
        run_child(kind, folder, pipeline, int(epochs))
        return
    from fastload.tools.synthetic import make_image_folder

    with tempfile.TemporaryDirectory() as tmp:
        if args.photos == "real":
            from real_photos import make_photo_folder

            made, stats = make_photo_folder(Path(tmp) / "photos", args.samples, classes=10,
                                            seed=args.seed, shorter=tuple(args.shorter),
                                            quality=tuple(args.quality))
            folder = str(made)
            print(f"real photographs: {stats}", flush=True)
        else:
            folder = str(make_image_folder(Path(tmp) / "photos", args.samples, classes=10,
                                           workers=2))
        if args.format != "folder":
            from fastload.tools.convert import convert

            convert(folder, Path(tmp) / args.format, format=args.format, shards=4,
                    restarts=args.restarts)
            folder = str(Path(tmp) / args.format)
        ratios, cpu_ratios = [], []
        for k in range(args.pairs):
            order = ("ceiling", "torch") if k % 2 == 0 else ("torch", "ceiling")
            got = {kind: measure(kind, folder, args.pipeline, args.epochs) for kind in order}
            rate = {kind: got[kind]["images_per_s"] for kind in got}
            cpu = {kind: got[kind]["cpu_ms_per_image"] for kind in got}
            ratios.append(rate["torch"] / rate["ceiling"])
            cpu_ratios.append(cpu["ceiling"] / cpu["torch"])
            print(f"pair {k + 1}: ceiling {rate['ceiling']:.0f} img/s ({cpu['ceiling']:.3f} ms "
                  f"CPU/image), torch ({args.pipeline}) {rate['torch']:.0f} img/s "
                  f"({cpu['torch']:.3f} ms), ratio {ratios[-1]:.1%}, CPU ratio "
                  f"{cpu_ratios[-1]:.1%}", flush=True)
        print(f"median ratio over {len(ratios)} pairs: {statistics.median(ratios):.1%} "
              f"(range {min(ratios):.1%}-{max(ratios):.1%}); CPU per image, ceiling / torch: "
              f"{statistics.median(cpu_ratios):.1%} (range {min(cpu_ratios):.1%}-"
              f"{max(cpu_ratios):.1%})")


if __name__ == "__main__":
    main()
