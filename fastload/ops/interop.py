"""Pipelines from the transforms users already have: ``from_torchvision`` and ``from_timm``.

``from_torchvision(transform)`` reads a torchvision ``Compose`` (v1 ``torchvision.transforms``
or ``torchvision.transforms.v2``), or a list of transforms, by class name and attributes
(torchvision itself is never imported) and gives the fastload ``Pipeline`` doing the same, with
every parameter carried. Tensor conversions (``ToTensor``, ``PILToTensor``, ``ToImage``,
``ToDtype``, ``ConvertImageDtype``, ``ToPureTensor``) are absorbed: fastload decodes to uint8
and ``Normalize`` makes floats. What cannot be mapped is a ``SpecError`` naming the transform,
its position and what to do, never a silent drop: fastload resizes with antialiased bilinear
only, so another interpolation is refused unless ``accept_bilinear=True`` says the difference
is fine.

``from_timm(**kwargs)`` takes ``timm.data.create_transform``'s arguments and gives the pipeline
timm would build (training: RandomResizedCrop, flips, RandAugment or ColorJitter, Normalize,
RandomErasing; eval: Resize to ``floor(size / crop_pct)``, CenterCrop, Normalize).
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional, Sequence, Union

from ..errors import SpecError
from .autoaugment import RandAugment, TrivialAugmentWide
from .basic import (IMAGENET_MEAN, IMAGENET_STD, CenterCrop, Decode, Normalize, Op,
                    RandomErasing, RandomFlip, RandomResizedCrop, Resize)
from .photometric import ColorJitter, GaussianBlur, RandomGrayscale, RandomSolarize, ThreeAugment
from .spec import EQUIVALENT, Pipeline

ABSORBED = {"ToTensor", "PILToTensor", "ToImage", "ToImageTensor", "ToDtype",
            "ConvertImageDtype", "ToPureTensor"}


def from_torchvision(transform: Any, *, accept_bilinear: bool = False) -> Pipeline:
    """The Pipeline of a torchvision transform (a ``Compose``, or a list); see the module."""
    if isinstance(transform, (list, tuple)):
        steps = list(transform)
    elif hasattr(transform, "transforms"):  # Compose
        steps = list(transform.transforms)
    else:
        steps = [transform]
    ops: list[Op] = [Decode()]
    floats = False  # after ToTensor / ToDtype(float): RandomSolarize's threshold is 0-1
    for k, step in enumerate(steps):
        name = type(step).__name__
        where = f"from_torchvision: item {k} ({name})"
        if name in ABSORBED:
            floats = floats or name == "ToTensor" or _float_dtype(step)
            continue
        ops.extend(_map(step, name, where, floats, accept_bilinear))
    try:
        return Pipeline(*ops)
    except SpecError as exc:
        raise SpecError(f"from_torchvision: the transforms map to fastload ops that cannot run in "
                        f"this order ({exc}); reorder the torchvision transforms the same way "
                        "(geometry first, then photometric ops, Normalize, RandomErasing)") from None


def _float_dtype(step: Any) -> bool:
    dtype = getattr(step, "dtype", None)
    if isinstance(dtype, dict):  # v2 ToDtype({tv_tensors.Image: torch.float32, ...})
        dtype = next(iter(dtype.values()), None)
    return "float" in str(dtype) or "half" in str(dtype)


def _interpolation(step: Any, where: str, accept_bilinear: bool, allowed: str) -> None:
    mode = getattr(step, "interpolation", None)
    text = str(getattr(mode, "value", mode)).lower()
    if mode is None or allowed in text:
        if allowed == "bilinear" and getattr(step, "antialias", True) is False:
            raise SpecError(f"{where}: antialias=False; fastload always antialiases when it "
                            "shrinks (torchvision's default): drop antialias=False")
        return
    if allowed == "bilinear" and accept_bilinear:
        return
    what = ("fastload resizes with antialiased bilinear only; use "
            "InterpolationMode.BILINEAR, or pass accept_bilinear=True to take bilinear instead"
            if allowed == "bilinear" else
            "fastload's augmentations sample geometry with nearest neighbour (torchvision's "
            "default); use InterpolationMode.NEAREST")
    raise SpecError(f"{where}: interpolation={text}; {what}")


def _size(size: Any) -> Union[int, tuple[int, int]]:
    if isinstance(size, (list, tuple)):
        if len(size) == 1:
            return int(size[0])
        return (int(size[0]), int(size[1]))
    return int(size)


def _map(step: Any, name: str, where: str, floats: bool, accept_bilinear: bool) -> list[Op]:
    if name == "RandomResizedCrop":
        _interpolation(step, where, accept_bilinear, "bilinear")
        size = _size(step.size)
        if isinstance(size, tuple) and size[0] == size[1]:
            size = size[0]
        return [RandomResizedCrop(size, scale=tuple(step.scale), ratio=tuple(step.ratio))]
    if name == "Resize":
        _interpolation(step, where, accept_bilinear, "bilinear")
        return [Resize(None if step.size is None else _size(step.size),
                       max_size=getattr(step, "max_size", None))]
    if name == "CenterCrop":
        return [CenterCrop(_size(step.size))]
    if name == "RandomHorizontalFlip":
        return [RandomFlip(float(step.p))]
    if name == "ColorJitter":
        def pair(value: Any) -> Any:
            return 0.0 if value is None else tuple(float(v) for v in value)
        return [ColorJitter(pair(step.brightness), pair(step.contrast), pair(step.saturation),
                            pair(step.hue))]
    if name == "RandomGrayscale":
        return [RandomGrayscale(float(step.p))]
    if name == "GaussianBlur":
        kernel = tuple(int(v) for v in step.kernel_size)
        sigma = tuple(float(v) for v in step.sigma)
        return [GaussianBlur(kernel if kernel[0] != kernel[1] else kernel[0], sigma=sigma)]
    if name == "RandomSolarize":
        threshold = float(step.threshold) * (255.0 if floats else 1.0)
        return [RandomSolarize(threshold=threshold, p=float(step.p))]
    if name in ("TrivialAugmentWide", "RandAugment"):
        _interpolation(step, where, accept_bilinear, "nearest")
        fill = getattr(step, "fill", None)
        fills = fill.values() if isinstance(fill, dict) else [fill]
        if any(f not in (None, 0, 0.0) and f != [0] for f in fills):
            raise SpecError(f"{where}: fill={fill!r}; fastload fills with 0 (torchvision's "
                            "default): drop fill")
        if name == "TrivialAugmentWide":
            return [TrivialAugmentWide(num_magnitude_bins=int(step.num_magnitude_bins))]
        return [RandAugment(num_ops=int(step.num_ops), magnitude=int(step.magnitude),
                            num_magnitude_bins=int(step.num_magnitude_bins))]
    if name == "Normalize":
        if not floats:
            raise SpecError(f"{where}: Normalize before a tensor conversion; put ToTensor (or "
                            "ToImage + ToDtype(float32, scale=True)) before it")
        return [Normalize(tuple(float(v) for v in step.mean), tuple(float(v) for v in step.std))]
    if name == "RandomErasing":
        value = step.value
        if value is None or value == "random":  # v2 keeps "random" as None
            value = "random"
        elif isinstance(value, (list, tuple)):
            value = float(value[0]) if len(value) == 1 else tuple(float(v) for v in value)
        return [RandomErasing(p=float(step.p), scale=tuple(step.scale), ratio=tuple(step.ratio),
                              value=value)]
    if name == "AutoAugment":
        raise SpecError(f"{where}: fastload has no AutoAugment policy (ImageNet/CIFAR/SVHN "
                        "sub-policies); use RandAugment or TrivialAugmentWide, which it has")
    if name == "Compose":
        raise SpecError(f"{where}: a nested Compose; flatten it into one list")
    hint = EQUIVALENT.get(name)
    raise SpecError(f"{where}: has no fastload equivalent"
                    + (f" (use {hint})" if hint else "") +
                    "; remove it, or run it as an fl.Lambda(fn) on the uint8 image")


# --- timm ---------------------------------------------------------------------------------------
def from_timm(input_size: Union[int, Sequence[int]] = 224, is_training: bool = False, *,
              scale: Optional[Sequence[float]] = None, ratio: Optional[Sequence[float]] = None,
              hflip: float = 0.5, vflip: float = 0.0, color_jitter: Any = 0.4,
              auto_augment: Optional[str] = None, interpolation: str = "bilinear",
              mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              re_prob: float = 0.0, re_mode: str = "const", re_count: int = 1,
              crop_pct: Optional[float] = None, crop_mode: Optional[str] = None,
              accept_bilinear: bool = False, **unsupported: Any) -> Pipeline:
    """The Pipeline ``timm.data.create_transform(**kwargs)`` describes; see the module."""
    if unsupported:
        raise SpecError(f"from_timm: {sorted(unsupported)} not supported (fastload maps "
                        "input_size, is_training, scale, ratio, hflip, vflip, color_jitter, "
                        "auto_augment, interpolation, mean, std, re_prob, re_mode, re_count, "
                        "crop_pct, crop_mode)")
    size = input_size if isinstance(input_size, int) else tuple(input_size)[-2:]
    if not isinstance(size, int):
        size = size[0] if size[0] == size[1] else (int(size[0]), int(size[1]))
    if interpolation not in ("bilinear",) and not accept_bilinear:
        raise SpecError(f"from_timm: interpolation={interpolation!r}; fastload resizes with "
                        "antialiased bilinear only; pass interpolation='bilinear', or "
                        "accept_bilinear=True to take bilinear instead")
    norm = Normalize(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    if not is_training:
        if crop_mode not in (None, "center"):
            raise SpecError(f"from_timm: crop_mode={crop_mode!r}; fastload center-crops only")
        pct = 0.875 if crop_pct is None else float(crop_pct)
        if not 0 < pct <= 1:
            raise SpecError(f"from_timm: crop_pct={crop_pct!r} must be in (0, 1]")
        side = size if isinstance(size, int) else max(size)
        return Pipeline(Decode(), Resize(math.floor(side / pct)), CenterCrop(size), norm)
    ops: list[Op] = [Decode(), RandomResizedCrop(size, scale=tuple(scale or (0.08, 1.0)),
                                                 ratio=tuple(ratio or (3 / 4, 4 / 3)))]
    if vflip > 0:
        raise SpecError(f"from_timm: vflip={vflip}; fastload flips horizontally only")
    if hflip > 0:
        ops.append(RandomFlip(float(hflip)))
    if auto_augment:
        ops.append(_timm_augment(auto_augment))
    elif color_jitter is not None and color_jitter != 0:
        jitter = (color_jitter,) * 3 if isinstance(color_jitter, (int, float)) else \
            tuple(color_jitter)
        ops.append(ColorJitter(*(float(v) for v in jitter)))
    ops.append(norm)
    if re_prob > 0:
        if re_count != 1:
            raise SpecError(f"from_timm: re_count={re_count}; fastload erases one rectangle")
        values = {"const": 0.0, "pixel": "random"}
        if re_mode not in values:
            raise SpecError(f"from_timm: re_mode={re_mode!r}; fastload erases with a constant "
                            "('const') or per-pixel noise ('pixel')")
        ops.append(RandomErasing(p=float(re_prob), scale=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3),
                                 value=values[re_mode]))
    return Pipeline(*ops)


def _timm_augment(spec: str) -> Op:
    """timm's ``auto_augment`` string: ``rand-m9-n2-mstd0.5-inc1`` (RandAugment on timm's 0-10
    magnitude scale, as ``presets.timm_randaugment``) or ``3a`` (ThreeAugment)."""
    if spec == "3a":
        return ThreeAugment()
    parts = spec.split("-")
    if parts[0] != "rand":
        raise SpecError(f"from_timm: auto_augment={spec!r}; fastload maps timm's RandAugment "
                        "('rand-m9-mstd0.5-inc1', ...) and '3a'; AutoAugment and AugMix "
                        "policies have no equivalent")
    magnitude, num_ops, std, prob = 10, 2, 0.0, 0.5
    for part in parts[1:]:
        key, value = re.match(r"([a-z]+)(.*)", part).groups()  # type: ignore[union-attr]
        if key == "m":
            magnitude = int(float(value))
        elif key == "n":
            num_ops = int(value)
        elif key == "mstd":
            std = float(value)
        elif key == "p":
            prob = float(value)
        elif key == "inc":
            continue  # fastload's ops already grow in severity with the magnitude
        else:
            raise SpecError(f"from_timm: auto_augment={spec!r}: option {part!r} is not mapped "
                            "(m, n, mstd, p and inc are)")
    return RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=11,
                       magnitude_std=std, p=prob)
