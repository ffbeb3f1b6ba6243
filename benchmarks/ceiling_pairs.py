"""The torch backend against the decode-only ceiling, measured in adjacent pairs.

    python benchmarks/ceiling_pairs.py [--samples 1024] [--pairs 7] [--pipeline train|eval]
                                       [--photos synthetic|real]

``--photos real``: real photographs (``real_photos.py``: recut from the photos shipped in
scikit-image and scikit-learn) instead of the synthetic generator.

On a shared VM the speed of the whole machine drifts by 10-30% within minutes, and
pytest-benchmark runs all rounds of one benchmark before the next: the two sides of a ratio
can land in different weather. Here each pair runs the ceiling and the torch backend back to
back, each in a fresh process (one warm-up epoch, then ``--epochs`` timed epochs, 2 workers,
batch 64), alternating which goes first; the ratio of each pair is reported, and their median.
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
        from fastload.imaging import decode_rgb

        decode_rgb(self.source.read(index % len(self.source))[0], "bench")
        return 1


def run_child(kind: str, folder: str, pipeline: str, epochs: int) -> None:
    import torch

    import fastload as fl

    if kind == "ceiling":  # one pass over all epochs: no refill at epoch starts, like fastload's
        source = fl.FolderSource(folder)
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
    start = time.perf_counter()
    images = sum(sizes)
    print(json.dumps({"images_per_s": images / (time.perf_counter() - start)}))


def measure(kind: str, folder: str, pipeline: str, epochs: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", kind, folder, pipeline, str(epochs)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pipeline", choices=("train", "eval"), default="train")
    parser.add_argument("--photos", choices=("synthetic", "real"), default="synthetic")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder, pipeline, epochs = args.child
        run_child(kind, folder, pipeline, int(epochs))
        return
    from fastload.synthetic import make_image_folder

    with tempfile.TemporaryDirectory() as tmp:
        if args.photos == "real":
            from real_photos import make_photo_folder

            made, stats = make_photo_folder(Path(tmp) / "photos", args.samples, classes=10)
            folder = str(made)
            print(f"real photographs: {stats}", flush=True)
        else:
            folder = str(make_image_folder(Path(tmp) / "photos", args.samples, classes=10,
                                           workers=2))
        ratios = []
        for k in range(args.pairs):
            order = ("ceiling", "torch") if k % 2 == 0 else ("torch", "ceiling")
            rate = {kind: measure(kind, folder, args.pipeline, args.epochs) for kind in order}
            ratios.append(rate["torch"] / rate["ceiling"])
            print(f"pair {k + 1}: ceiling {rate['ceiling']:.0f} img/s, torch ({args.pipeline}) "
                  f"{rate['torch']:.0f} img/s, ratio {ratios[-1]:.1%}", flush=True)
        print(f"median ratio over {len(ratios)} pairs: {statistics.median(ratios):.1%} "
              f"(range {min(ratios):.1%}-{max(ratios):.1%})")


if __name__ == "__main__":
    main()
