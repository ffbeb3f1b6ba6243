"""Targets (issue 30): segmentation (masks) and segmentation + detection (masks and boxes)
train pipelines on real photographs with generated masks and boxes, fastload against
torchvision v2 doing the same, and against fastload's own image-only pipeline on the same
photographs.

    bash benchmarks/peers_setup.sh     # once: .venv-peers (torch 2.14.1, torchvision)
    python benchmarks/targets.py --images 2000 --rounds 5 --epochs 2 --json out.json

Data: ``real_photos.py``'s photographs; for each, a mask PNG (mode L: 0 background, 3-6
rectangles and ellipses of classes 1..20, painted in order) and the rectangles' and ellipses'
boxes; listed in ``plain.jsonl`` (path, label), ``seg.jsonl`` (path, mask) and ``det.jsonl``
(path, mask, boxes).
Systems (RandomResizedCrop(224) + flip + normalize to float32 NCHW, batch 64, 2 workers, each
run a fresh process of ``.venv-peers``, one warm-up epoch then ``--epochs`` timed epochs, the
order rotated every round):

- ``fastload-image-only``: ``fl.loader(fl.ListSource("plain.jsonl"), ...)``.
- ``fastload-segmentation``: ``fl.ListSource("seg.jsonl")``: the batch's ``masks`` (int64
  (B, 224, 224)) follow each image's crop and flip; ``fastload-detection``: ``det.jsonl``,
  masks and ``boxes``.
- ``torchvision-segmentation`` / ``torchvision-detection``: a Dataset that opens the photo and
  its mask with PIL, wraps them (with the boxes) as ``tv_tensors`` and runs
  ``v2.Compose([ToImage(), RandomResizedCrop(224), RandomHorizontalFlip(), ToDtype(float32 for
  the image, scale), Normalize(, SanitizeBoundingBoxes())])``; a DataLoader (2 workers,
  persistent, shuffling) stacks images and masks (and lists the boxes).

The ratio is taken within each round, then the median.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import peers
from peers import BATCH, MEAN, SIZE, STD, WORKERS

SYSTEMS = ("fastload-image-only", "fastload-segmentation", "fastload-detection",
           "torchvision-segmentation", "torchvision-detection")
PAIRS = {"fastload-segmentation": "torchvision-segmentation",
         "fastload-detection": "torchvision-detection"}
LISTS = {"fastload-image-only": "plain.jsonl", "fastload-segmentation": "seg.jsonl",
         "fastload-detection": "det.jsonl"}


def epochs_of(system: str, data: Path):
    import torch

    if system.startswith("fastload"):
        import fastload as fl

        lst = data / LISTS[system]
        pipe = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(SIZE), fl.RandomFlip(),
                           fl.Normalize(mean=MEAN, std=STD))
        loader = fl.loader(fl.ListSource(lst), pipe, BATCH, num_workers=WORKERS,
                           backend="torch", shuffle=True)
        while True:
            if system == "fastload-image-only":
                yield ((b.images, b.labels) for b in loader)
            else:
                yield ((b.images, b.masks) for b in loader)
    from PIL import Image
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    boxed = system == "torchvision-detection"
    transform = v2.Compose([
        v2.ToImage(), v2.RandomResizedCrop(SIZE, antialias=True), v2.RandomHorizontalFlip(),
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(MEAN, STD), *([v2.SanitizeBoundingBoxes()] if boxed else [])])
    lines = [json.loads(line) for line in open(data / ("det.jsonl" if boxed else "seg.jsonl"))]

    class Segmentation(torch.utils.data.Dataset):
        def __len__(self):
            return len(lines)

        def __getitem__(self, i):
            line = lines[i]
            image = Image.open(data / line["path"]).convert("RGB")
            mask = tv_tensors.Mask(torch.from_numpy(
                __import__("numpy").array(Image.open(data / line["mask"]))))
            target = {"masks": mask}
            if boxed:
                target["boxes"] = tv_tensors.BoundingBoxes(
                    [b[:4] for b in line["boxes"]], format="XYXY",
                    canvas_size=(image.height, image.width), dtype=torch.float32)
                target["labels"] = torch.tensor([b[4] for b in line["boxes"]])
            return transform(image, target)

    def collate(rows):
        return (torch.stack([img for img, _ in rows]),
                torch.stack([t["masks"] for _, t in rows]).long(),
                [t.get("boxes") for _, t in rows], [t.get("labels") for _, t in rows])

    loader = torch.utils.data.DataLoader(Segmentation(), batch_size=BATCH, shuffle=True,
                                         num_workers=WORKERS, persistent_workers=True,
                                         collate_fn=collate)
    while True:
        yield ((images, masks) for images, masks, _, _ in loader)


def prepare(data: Path, images: int) -> None:
    """The photo folder, then a mask and boxes for each photograph, listed twice."""
    import numpy as np
    from PIL import Image, ImageDraw

    import fastload as fl

    peers.photo_folder(data, images)
    if (data / "det.jsonl").exists():
        return
    source = fl.FolderSource(data / "folder", index_file=None)
    (data / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    det, seg, plain = [], [], []
    for i in range(len(source)):
        width, height = Image.open(source.path(i)).size
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        boxes = []
        for _ in range(int(rng.integers(3, 7))):
            w, h = int(rng.integers(width // 8, width // 2)), int(rng.integers(height // 8, height // 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            cls = int(rng.integers(1, 21))
            (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(
                [x, y, x + w - 1, y + h - 1], fill=cls)
            boxes.append([x, y, x + w, y + h, cls])
        name = f"masks/{i:06d}.png"
        mask.save(data / name)
        path = str(source.path(i).relative_to(data))
        seg.append({"path": path, "mask": name})
        det.append({"path": path, "mask": name, "boxes": boxes})
        plain.append({"path": path, "label": int(source.labels[i])})
    for name, lines in (("plain.jsonl", plain), ("seg.jsonl", seg), ("det.jsonl", det)):
        with open(data / f"{name}.tmp", "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
        (data / f"{name}.tmp").rename(data / name)
    print(f"masks and boxes for {len(seg)} photographs", flush=True)


def summarize(runs: list[dict], systems: list[str]) -> str:
    rate = {(g["system"], g["round"]): g["images_per_s"] for g in runs}
    rounds = sorted({g["round"] for g in runs})
    lines = ["| system | " + " | ".join(f"round {r}" for r in rounds) +
             " | median img/s | vs torchvision doing the same | vs fastload-image-only |",
             "|---|" + "---|" * len(rounds) + "---|---|---|"]
    for system in systems:
        row = [rate[system, r] for r in rounds]
        cells = []
        for base in (PAIRS.get(system), "fastload-image-only"):
            ratio = [rate[system, r] / rate[base, r] for r in rounds] if base in systems else None
            cells.append(f"**{statistics.median(ratio):.2f}x**" if ratio else "")
        lines.append(f"| {system} | " + " | ".join(f"{x:.0f}" for x in row) +
                     f" | {statistics.median(row):.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    peers.drive(__doc__, SYSTEMS, __file__, prepare, epochs_of, summarize)


if __name__ == "__main__":
    main()
