"""Train a tiny model for a few steps: first with a DataLoader, then with the one-line swap.

    python examples/train_minimal.py [--data DIR] [--steps 40]

Without --data it generates a small sample ImageFolder of photographic-like JPEGs.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fastload as fl
from fastload.tools.synthetic import make_image_folder


class ImageFolderDataset(torch.utils.data.Dataset):
    """What people write today (torchvision's ImageFolder + transforms, without torchvision)."""

    def __init__(self, root):
        self.samples = [(p, label) for label, d in enumerate(sorted(Path(root).iterdir()))
                        for p in sorted(d.glob("*.jpg"))]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        img = Image.open(path).convert("RGB").resize((64, 64), Image.BILINEAR)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)
        mean = torch.tensor(fl.IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(fl.IMAGENET_STD).view(3, 1, 1)
        return (x - mean) / std, label


def train(loader, steps, label):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    start, step, first = time.perf_counter(), 0, None
    while step < steps:
        for images, labels in loader:
            # hard labels (B,) or, with Mixup/CutMix, soft targets (B, classes): cross_entropy
            # takes either
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == steps:
                break
    print(f"{label}: {steps} steps, loss {first:.3f} -> {loss.item():.3f}, "
          f"{time.perf_counter() - start:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an ImageFolder (default: a generated sample)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or make_image_folder(Path(tmp) / "sample", 128, classes=10)

        before = torch.utils.data.DataLoader(ImageFolderDataset(data), batch_size=16, shuffle=True,
                                             num_workers=args.workers, persistent_workers=args.workers > 0)
        train(before, args.steps, "torch.utils.data.DataLoader")

        # the one-line swap (the DataLoader's keywords keep their meaning):
        after = fl.loader(data, fl.presets.imagenet_train(64), batch_size=16, shuffle=True,
                          num_workers=args.workers, persistent_workers=args.workers > 0)
        with after:
            train(after, args.steps, "fastload.loader")


if __name__ == "__main__":
    main()
