"""The baseline users write today: a plain DataLoader over an ImageFolder-style Dataset with
per-sample PIL transforms (torchvision's when it is importable, the same steps by hand if not)
and the default collate. Same source, batch size, workers and pinning as the fastload run."""

from __future__ import annotations

import importlib.util
import io
import math
import random
from typing import Any, Callable

from PIL import Image

from ...ops import draws
from ...ops.spec import Pipeline
from ...sources.base import Source


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def transform_for(pipeline: Pipeline) -> Callable[[Image.Image], Any]:
    """The per-sample transform a user would write for this pipeline."""
    if has_torchvision():
        return _torchvision_transform(pipeline)
    return _HandWritten(pipeline)


def _torchvision_transform(pipeline: Pipeline) -> Callable[[Image.Image], Any]:
    import torchvision.transforms as T

    steps: list[Any] = []
    geometry = pipeline.geometry
    if geometry.random_crop is not None:
        scale, ratio = geometry.random_crop
        steps.append(T.RandomResizedCrop(geometry.output_size, scale=scale, ratio=ratio))
    if geometry.resizes:
        steps.append(T.Resize(geometry.resize, max_size=geometry.resize_max))
    if geometry.crop is not None:
        steps.append(T.CenterCrop(geometry.crop))
    if pipeline.flip is not None:
        steps.append(T.RandomHorizontalFlip(pipeline.flip.p))
    if pipeline.normalize is not None:
        steps += [T.ToTensor(), T.Normalize(pipeline.normalize.mean, pipeline.normalize.std)]
    else:
        steps.append(T.PILToTensor())
    if pipeline.erasing is not None:
        e = pipeline.erasing
        value = "random" if e.value == "random" else e.value
        steps.append(T.RandomErasing(p=e.p, scale=e.scale, ratio=e.ratio, value=value))
    return T.Compose(steps)


class _HandWritten:
    """torchvision's transforms written out with PIL, random and torch (no torchvision)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def __call__(self, img: Image.Image) -> Any:
        import numpy as np
        import torch

        p = self.pipeline
        geometry = p.geometry
        if geometry.random_crop is not None:
            top, left, h, w = _rrc_params(img.size[1], img.size[0], *geometry.random_crop)
            height, width = geometry.output_size
            img = img.resize((width, height), Image.BILINEAR, box=(left, top, left + w, top + h))
        if geometry.resizes:
            height, width = geometry.resized(img.size[1], img.size[0])
            img = img.resize((width, height), Image.BILINEAR)
        if geometry.crop is not None:
            w, h = img.size
            ch, cw = geometry.crop
            top, left, _, _ = (int(v) for v in draws.center_box(h, w, (ch, cw)))
            img = img.crop((left, top, left + cw, top + ch))
        if p.flip is not None and random.random() < p.flip.p:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
        if p.normalize is None:
            return x
        x = x.float().div(255)
        mean = torch.tensor(p.normalize.mean).view(3, 1, 1)
        std = torch.tensor(p.normalize.std).view(3, 1, 1)
        x = (x - mean) / std
        if p.erasing is not None and random.random() < p.erasing.p:
            e = p.erasing
            box = _erase_params(x.shape[1], x.shape[2], e.scale, e.ratio)
            if box is not None:
                top, left, h, w = box
                x[:, top:top + h, left:left + w] = (torch.randn(3, h, w) if e.value == "random"
                                                    else torch.tensor(e.value).view(-1, 1, 1))
        return x


def _rrc_params(height: int, width: int, scale: Any, ratio: Any) -> tuple[int, int, int, int]:
    area = height * width
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def _erase_params(height: int, width: int, scale: Any, ratio: Any) -> Any:
    area = height * width
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if h < height and w < width:
            return random.randint(0, height - h), random.randint(0, width - w), h, w
    return None


class BaselineDataset:
    """torchvision.datasets.ImageFolder's shape: open with PIL, convert to RGB, transform."""

    def __init__(self, source: Source, pipeline: Pipeline) -> None:
        self.source = source
        self.transform = transform_for(pipeline)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        data, label = self.source.read(index)
        img = Image.open(io.BytesIO(data)).convert("RGB")
        return self.transform(img), label


def check_expressible(pipeline: Pipeline) -> None:
    """A SpecError for a pipeline with ops this baseline does not write (per-sample
    augmentations, mixing, user functions): refused rather than compared against a lighter
    pipeline."""
    extra = [type(op).__name__ for op in (*pipeline.pixel, pipeline.mixing, *pipeline.batch_fns)
             if op is not None]
    if pipeline.schedule is not None:
        extra.append("RandomResizedCrop(by_epoch sizes)")
    if extra:
        from ...errors import SpecError

        raise SpecError(f"bench: the built-in baseline does not run {', '.join(extra)}; run "
                        "with --no-baseline, or see benchmarks/recipes.py for a torchvision "
                        "baseline of the recipe presets")


def baseline_loader(source: Source, pipeline: Pipeline, *, batch_size: int, num_workers: int,
                    pin_memory: bool, seed: int = 0) -> Any:
    """``DataLoader(ImageFolder(...), shuffle=True, persistent_workers=True)``, as users write it."""
    import torch

    check_expressible(pipeline)

    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        BaselineDataset(source, pipeline), batch_size=batch_size, shuffle=True,
        num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
        generator=generator)
