"""fastload's recipe presets against torchvision's own transforms, on the same JPEGs.

    python benchmarks/recipes.py [--data DIR] [--images 2000] [--rounds 5] [--venv DIR]

torchvision installs only beside its matching torch (torchvision 0.29.1 with torch 2.14.1, a
multi-GB CUDA build that also runs on a CPU), so this script keeps them in a venv of its own
(``--venv``, default ``.venv-torchvision``): it creates it on the first run (``pip install
torch==2.14.1 torchvision==0.29.1`` and this checkout, editable), then re-runs itself inside it
on this checkout's code. Nothing of this joins fastload's dependencies.

Two measurements, figures in benchmarks/README.md:

1. End to end, ``fl.presets.torchvision_v2(176)`` through the torch backend against a plain
   DataLoader running torchvision's reference recipe for ResNet-50 IMAGENET1K_V2 (the
   reference scripts' default PIL path: ``v2.RandomResizedCrop(176)``, ``RandomHorizontalFlip``,
   ``TrivialAugmentWide``, ``PILToTensor``, ``ToDtype(float32, scale=True)``, ``Normalize``,
   ``RandomErasing(0.1)``, and ``RandomChoice([MixUp(0.2), CutMix(1.0)])`` on each batch in the
   loop). Batch 64, 2 workers, each system in a fresh process, alternating order, one epoch
   per round; the table gives each round and the median ratio.
2. Per op, microseconds per 224x224 uint8 image (one thread): fastload's kernel against
   torchvision v2's functional op on a uint8 tensor; Mixup/CutMix per float32 batch of 256.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH, TORCHVISION = "2.14.1", "0.29.1"


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"torch=={TORCH}",
                        f"torchvision=={TORCHVISION}", "-e", str(ROOT)], check=True)
    return python


# --- one end-to-end run (in a fresh process) ------------------------------------------------

def run_fastload(data: str, batch: int, workers: int) -> float:
    import fastload as fl

    with fl.loader(data, fl.presets.torchvision_v2(176), batch, num_workers=workers,
                   shuffle=True, device="cpu") as loader:
        return _time(loader)


def run_torchvision(data: str, batch: int, workers: int) -> float:
    import torch
    from torchvision import datasets
    from torchvision.transforms import v2

    train = v2.Compose([
        v2.RandomResizedCrop(176, antialias=True), v2.RandomHorizontalFlip(0.5),
        v2.TrivialAugmentWide(), v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), v2.RandomErasing(0.1),
    ])
    dataset = datasets.ImageFolder(data, train)
    mix = v2.RandomChoice([v2.MixUp(alpha=0.2, num_classes=len(dataset.classes)),
                           v2.CutMix(alpha=1.0, num_classes=len(dataset.classes))])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         num_workers=workers, persistent_workers=True)
    return _time(mix(images, labels) for images, labels in loader)


def _time(batches) -> float:
    start, images = time.perf_counter(), 0
    for images_batch, _ in batches:
        images += len(images_batch)
    return images / (time.perf_counter() - start)


# --- per-op costs -----------------------------------------------------------------------------

def op_costs() -> list[tuple[str, float, float]]:
    import numpy as np
    import torch
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    from fastload.backends.torch import pixel as px
    from fastload.backends.mix import mix_images, soft_labels
    from fastload.ops.mixing import CutMix, Mixup, partners

    torch.set_num_threads(1)
    image = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
    pairs = [
        ("brightness 1.3", lambda: px.brightness(image, 1.3), lambda: TF.adjust_brightness(image, 1.3)),
        ("contrast 0.7", lambda: px.contrast(image, 0.7), lambda: TF.adjust_contrast(image, 0.7)),
        ("saturation 1.4", lambda: px.saturation(image, 1.4), lambda: TF.adjust_saturation(image, 1.4)),
        ("hue 0.1", lambda: px.hue(image, 0.1), lambda: TF.adjust_hue(image, 0.1)),
        ("grayscale", lambda: px.grayscale(image), lambda: TF.rgb_to_grayscale(image, 3)),
        ("solarize 128", lambda: px.solarize(image, 128.0), lambda: TF.solarize(image, 128.0)),
        ("gaussian blur k23 s1.5", lambda: px.blur(image, (23, 23, 1.5)),
         lambda: TF.gaussian_blur(image, [23, 23], [1.5, 1.5])),
        ("sharpness 1.5", lambda: px.sharpness(image, 1.5), lambda: TF.adjust_sharpness(image, 1.5)),
        ("posterize 4", lambda: px.posterize(image, 4), lambda: TF.posterize(image, 4)),
        ("autocontrast", lambda: px.autocontrast(image), lambda: TF.autocontrast(image)),
        ("equalize", lambda: px.equalize(image), lambda: TF.equalize(image)),
        ("rotate 30", lambda: px.KERNELS["rotate"](image, 30.0), lambda: TF.rotate(image, 30.0)),
        ("shear x 20", lambda: px.KERNELS["shear_x"](image, 20.0),
         lambda: TF.affine(image, 0.0, [0, 0], 1.0, [20.0, 0.0], center=[0, 0])),
        ("translate 10", lambda: px.KERNELS["translate"](image, (10, 0)),
         lambda: TF.affine(image, 0.0, [10, 0], 1.0, [0.0, 0.0])),
    ]
    batch = torch.randn(256, 3, 224, 224)
    labels = torch.randint(0, 1000, (256,))
    perm = partners(np.zeros(256, dtype=bool))
    for op, tv, name in ((Mixup(alpha=1.0, num_classes=1000), v2.MixUp(num_classes=1000),
                          "Mixup (batch 256)"),
                         (CutMix(alpha=1.0, num_classes=1000), v2.CutMix(num_classes=1000),
                          "CutMix (batch 256)")):
        draw = op.draw(0, 0, 0, 224, 224)
        pairs.append((name, lambda op=op, draw=draw: (mix_images(batch, draw, perm),
                                                      soft_labels(labels, op, draw, perm)),
                      lambda tv=tv: tv(batch, labels)))
    rows = []
    for name, ours, theirs in pairs:
        rows.append((name, _median_us(ours), _median_us(theirs)))
    return rows


def _median_us(fn, rounds: int = 15) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an ImageFolder (default: a generated sample)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--venv", default=str(ROOT / ".venv-torchvision"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, in this process
    args = parser.parse_args()
    if args.one:
        run = run_fastload if args.one == "fastload" else run_torchvision
        print(json.dumps({"images_per_s": run(args.data, args.batch, args.workers)}))
        return 0
    try:
        import torchvision  # noqa: F401
    except ImportError:
        python = ensure_venv(Path(args.venv))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, C extensions included
        return subprocess.run([str(python), __file__, *sys.argv[1:]], env=env).returncode
    from fastload.tools.synthetic import make_image_folder

    data = args.data or str(make_image_folder(ROOT / f".fastload-synthetic-{args.images}",
                                              args.images, classes=10, workers=os.cpu_count() or 1,
                                              progress=sys.stderr))
    results: dict[str, list[float]] = {"fastload": [], "torchvision": []}
    for r in range(args.rounds):
        order = ("fastload", "torchvision") if r % 2 == 0 else ("torchvision", "fastload")
        for name in order:
            out = subprocess.run([sys.executable, __file__, "--one", name, "--data", data,
                                  "--batch", str(args.batch), "--workers", str(args.workers)],
                                 capture_output=True, text=True, check=True)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"])
        print(f"round {r + 1}: fastload {results['fastload'][-1]:.0f} img/s, torchvision "
              f"{results['torchvision'][-1]:.0f} img/s, ratio "
              f"{results['fastload'][-1] / results['torchvision'][-1]:.2f}x", flush=True)
    ratios = [a / b for a, b in zip(results["fastload"], results["torchvision"])]
    import torch

    print(f"median: fastload {statistics.median(results['fastload']):.0f} img/s, torchvision "
          f"{statistics.median(results['torchvision']):.0f} img/s, ratio "
          f"{statistics.median(ratios):.2f}x (torch {torch.__version__}, "
          f"torchvision {torchvision.__version__})")
    print(f"\n{'op':<26}{'fastload us':>14}{'torchvision us':>16}{'ratio':>8}")
    for name, ours, theirs in op_costs():
        print(f"{name:<26}{ours:>14.0f}{theirs:>16.0f}{theirs / ours:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
