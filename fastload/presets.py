"""The standard ImageNet pipelines (timm / torchvision reference recipes)."""

from __future__ import annotations

from .ops import (IMAGENET_MEAN, IMAGENET_STD, CenterCrop, Decode, Normalize, RandomErasing,
                  RandomFlip, RandomResizedCrop, Resize)
from .errors import SpecError
from .spec import Pipeline


def imagenet_train(size: int = 224, *, erasing: float = 0.25) -> Pipeline:
    """RandomResizedCrop(size), flip, normalize, random erasing with probability ``erasing``."""
    ops = [Decode(), RandomResizedCrop(size), RandomFlip(0.5), Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if erasing > 0:
        ops.append(RandomErasing(p=erasing))
    return Pipeline(*ops)


def imagenet_eval(size: int = 224, *, crop_pct: float = 0.875) -> Pipeline:
    """Resize the shorter side to size / crop_pct (256 for 224), center-crop size, normalize."""
    if not 0 < crop_pct <= 1:
        raise SpecError(f"imagenet_eval: crop_pct={crop_pct!r} must be in (0, 1]")
    return Pipeline(Decode(), Resize(int(round(size / crop_pct))), CenterCrop(size),
                    Normalize(IMAGENET_MEAN, IMAGENET_STD))


PRESETS = {"imagenet_train": imagenet_train, "imagenet_eval": imagenet_eval}
