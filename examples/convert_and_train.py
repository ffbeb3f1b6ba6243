"""Convert an image folder into TFRecord and LMDB shards once, then train from the shards.

    python examples/convert_and_train.py [--data DIR] [--out DIR] [--steps 5]

Without --data it generates a small sample ImageFolder. The same seed gives the same batches
from the folder and from either kind of shards.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch

import fastload as fl
from fastload.tools.convert import convert
from fastload.tools.synthetic import make_image_folder
from fastload.tools.verify import verify


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an ImageFolder (default: a generated sample)")
    parser.add_argument("--out", help="where to write the shards (default: a temporary folder)")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else make_image_folder(Path(tmp) / "sample", 96, classes=8)
        out = Path(args.out or tmp)
        for fmt in ("tfrecord", "lmdb"):
            manifest = convert(data, out / fmt, format=fmt, shards=4, progress=sys.stderr)
            print(f"{fmt}: {manifest.samples} samples in {len(manifest.shards)} shards; "
                  f"{verify(out / fmt).summary()}")

        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(8, 8))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        first = {}
        for name, source in (("folder", data), ("tfrecord", out / "tfrecord"), ("lmdb", out / "lmdb")):
            with fl.loader(source, fl.presets.imagenet_train(64), batch_size=16, num_workers=2,
                           shuffle=True, seed=0) as loader:
                for step, (images, labels) in enumerate(loader):
                    if step == 0:
                        first[name] = images
                    loss = torch.nn.functional.cross_entropy(model(images), labels)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if step + 1 == args.steps:
                        break
            same = torch.equal(first[name], first["folder"])
            print(f"trained {args.steps} steps from {name}: loss {loss.item():.3f}, "
                  f"first batch identical to the folder's: {same}")


if __name__ == "__main__":
    main()
