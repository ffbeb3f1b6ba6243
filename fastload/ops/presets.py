"""The standard ImageNet pipelines (timm / torchvision / DeiT III reference recipes)."""

from __future__ import annotations

from ..errors import SpecError
from .autoaugment import RandAugment, TrivialAugmentWide
from .basic import (IMAGENET_MEAN, IMAGENET_STD, CenterCrop, Decode, Normalize, RandomErasing,
                    RandomFlip, RandomResizedCrop, Resize)
from .mixing import MixupOrCutMix
from .photometric import ColorJitter, ThreeAugment
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


def torchvision_v2(size: int = 176, *, num_classes: int = 1000) -> Pipeline:
    """torchvision's recipe for ResNet-50 IMAGENET1K_V2: RandomResizedCrop(size), flip,
    TrivialAugmentWide, normalize, RandomErasing(0.1), then per batch Mixup (alpha 0.2) or
    CutMix (alpha 1.0) with equal odds and label smoothing 0.1 (torchvision applies it in the
    loss; on soft targets that is the same thing)."""
    return Pipeline(Decode(), RandomResizedCrop(size), RandomFlip(0.5), TrivialAugmentWide(),
                    Normalize(IMAGENET_MEAN, IMAGENET_STD), RandomErasing(p=0.1),
                    MixupOrCutMix(mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5,
                                  num_classes=num_classes, label_smoothing=0.1))


def timm_randaugment(size: int = 224, *, num_classes: int = 1000,
                     color_jitter: float = 0.0) -> Pipeline:
    """timm's ``rand-m9-mstd0.5-inc1`` recipe: RandomResizedCrop(size), flip, RandAugment (2
    ops, magnitude 9 of timm's 0-10 scale (11 bins), noise 0.5, each op with probability 0.5;
    torchvision's ops and ranges, which already grow in severity with the magnitude as timm's
    ``inc1`` ops do), normalize, RandomErasing(0.25, per-pixel noise), Mixup 0.8 / CutMix 1.0,
    label smoothing 0.1. timm's training script passes ColorJitter 0.4 but does not apply it
    when RandAugment is on; ``color_jitter=0.4`` applies it anyway (after RandAugment)."""
    ops = [Decode(), RandomResizedCrop(size), RandomFlip(0.5),
           RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=11, magnitude_std=0.5, p=0.5)]
    if color_jitter:
        ops.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    return Pipeline(*ops, Normalize(IMAGENET_MEAN, IMAGENET_STD),
                    RandomErasing(p=0.25, value="random"),
                    MixupOrCutMix(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5,
                                  num_classes=num_classes, label_smoothing=0.1))


def deit3(size: int = 224, *, num_classes: int = 1000) -> Pipeline:
    """DeiT III's 3-Augment recipe: RandomResizedCrop(size), flip, one of grayscale /
    solarize / Gaussian blur, ColorJitter 0.3, normalize, Mixup 0.8 / CutMix 1.0 (no random
    erasing; no label smoothing: DeiT III trains with a binary cross-entropy)."""
    return Pipeline(Decode(), RandomResizedCrop(size), RandomFlip(0.5), ThreeAugment(),
                    ColorJitter(0.3, 0.3, 0.3), Normalize(IMAGENET_MEAN, IMAGENET_STD),
                    MixupOrCutMix(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5,
                                  num_classes=num_classes, label_smoothing=0.0))


PRESETS = {"imagenet_train": imagenet_train, "imagenet_eval": imagenet_eval,
           "torchvision_v2": torchvision_v2, "timm_randaugment": timm_randaugment,
           "deit3": deit3}
