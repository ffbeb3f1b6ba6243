"""The pipeline ops: frozen, hashable descriptions that import neither torch nor DALI.

Each op validates its own parameters on construction (errors name the op and the value) and
round-trips through a plain dict (``to_dict`` / ``op_from_dict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Optional, Union

from ..errors import SpecError
from .schedule import ByEpoch, by_epoch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DTYPES = ("float32", "float16", "bfloat16")

Size = Union[int, tuple[int, int]]


def _fail(op: str, message: str) -> None:
    raise SpecError(f"{op}: {message}")


def _size2(op: str, name: str, size: Any) -> tuple[int, int]:
    """Normalize an int or (height, width) to a (height, width) tuple of positive ints."""
    if isinstance(size, bool):
        _fail(op, f"{name}={size!r} must be an int or (height, width)")
    if isinstance(size, int):
        size = (size, size)
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
        _fail(op, f"{name}={size!r} must be an int or (height, width)")
    if min(size) <= 0:
        _fail(op, f"{name}={tuple(size)!r} must be positive")
    return (int(size[0]), int(size[1]))


def _range(op: str, name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """A (min, max) pair of numbers, increasing, inside [low, high]."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        _fail(op, f"{name}={value!r} must be a (min, max) pair of numbers")
    if not (math.isfinite(a) and math.isfinite(b)):
        _fail(op, f"{name}={value!r} must be finite")
    if a > b:
        _fail(op, f"{name}={tuple(value)!r} must be increasing")
    if a < low or b > high:
        _fail(op, f"{name}={tuple(value)!r} must lie within [{low}, {high}]")
    return (a, b)


def _prob(op: str, p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        _fail(op, f"p={p!r} must be a probability in [0, 1]")
    return float(p)


def _triple(op: str, name: str, value: Any) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        _fail(op, f"{name}={value!r} must be 3 numbers (one per RGB channel)")
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        _fail(op, f"{name}={value!r} must be 3 finite numbers (one per RGB channel)")
    return out  # type: ignore[return-value]


class Op:
    """Common behaviour of the ops: dict round trip. Subclasses are frozen dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": type(self).__name__}
        for key in (f.name for f in fields(self)):  # type: ignore[arg-type]
            value = getattr(self, key)
            out[key] = (value.to_json() if isinstance(value, ByEpoch)
                        else list(value) if isinstance(value, tuple) else value)
        return out


@dataclass(frozen=True)
class Decode(Op):
    """JPEG/PNG bytes -> RGB uint8 (grayscale, CMYK, palette and alpha are converted to RGB)."""


@dataclass(frozen=True)
class RandomResizedCrop(Op):
    """torchvision's RandomResizedCrop: area ~ U(scale), log-aspect ~ U(log ratio), 10 tries.

    ``size`` may follow the epoch (progressive resizing): ``fl.by_epoch({0: 160, 10: 192})``.
    """

    size: Any
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        name = "RandomResizedCrop"
        size = self.size
        if isinstance(size, (ByEpoch, dict)):
            size = by_epoch(size).map(lambda v: _size2(name, "size", v))
        else:
            size = _size2(name, "size", size)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "scale", _range(name, "scale", self.scale, 1e-6, 1.0))
        ratio = _range(name, "ratio", self.ratio, 1e-6, 1e6)
        object.__setattr__(self, "ratio", ratio)
        if self.scale[1] <= 0:
            _fail(name, f"scale={self.scale!r} must allow a non-empty crop")


@dataclass(frozen=True)
class Resize(Op):
    """Resize, antialiased bilinear. An int sets the shorter side; (height, width) sets both.
    ``max_size`` (torchvision's): the longer side is at most that, the shorter shrinking with it;
    with ``size=None`` the longer side is ``max_size`` (``Resize(None, max_size=640)`` +
    ``CenterCrop(640)``: a letterbox, the whole image kept, padded to a square)."""

    size: Optional[Size] = None
    max_size: Optional[int] = None

    def __post_init__(self) -> None:
        if self.max_size is not None and (isinstance(self.max_size, bool) or
                                          not isinstance(self.max_size, int) or self.max_size <= 0):
            _fail("Resize", f"max_size={self.max_size!r} must be a positive int")
        if self.size is None:
            if self.max_size is None:
                _fail("Resize", "give size (the shorter side, or (height, width)) or max_size "
                                "(the longer side)")
        elif isinstance(self.size, int) and not isinstance(self.size, bool):
            if self.size <= 0:
                _fail("Resize", f"size={self.size!r} must be positive")
            if self.max_size is not None and self.max_size <= self.size:
                _fail("Resize", f"max_size={self.max_size} must be greater than size={self.size} "
                                "(the shorter side)")
        else:
            object.__setattr__(self, "size", _size2("Resize", "size", self.size))
            if self.max_size is not None:
                _fail("Resize", "max_size bounds the longer side of a size that sets the shorter "
                                "one; with size=(height, width) leave it out")


@dataclass(frozen=True)
class CenterCrop(Op):
    """Crop the center (height, width); an image smaller than that is padded with zeros."""

    size: Size

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _size2("CenterCrop", "size", self.size))


@dataclass(frozen=True)
class RandomFlip(Op):
    """Horizontal flip with probability p."""

    p: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _prob("RandomFlip", self.p))


@dataclass(frozen=True)
class Normalize(Op):
    """uint8 -> float: (x / 255 - mean) / std, channels first. Runs in the device tail."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _triple("Normalize", "mean", self.mean))
        std = _triple("Normalize", "std", self.std)
        if min(std) <= 0:
            _fail("Normalize", f"std={std!r} must be positive")
        object.__setattr__(self, "std", std)
        if max(self.mean) > 1 or max(std) > 1:  # DALI's and timm configs' 0-255 units
            scaled = tuple(round(v / 255, 4) for v in self.mean), tuple(round(v / 255, 4) for v in std)
            _fail("Normalize", f"mean={self.mean!r}, std={std!r} look like 0-255 values; "
                  "Normalize takes them in 0-1 units, as torchvision's (it computes "
                  f"(x / 255 - mean) / std): pass mean={scaled[0]}, std={scaled[1]}")
        if self.dtype not in DTYPES:
            _fail("Normalize", f"dtype={self.dtype!r} must be one of {DTYPES}")


@dataclass(frozen=True)
class RandomErasing(Op):
    """Zhong et al. 2017, as torchvision: with prob. p erase one rectangle of area ~ U(scale)*HW.

    ``value`` is a number or 3 numbers (in normalized units) or ``"random"`` (per-pixel N(0, 1)).
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: Union[float, tuple[float, float, float], str] = 0.0

    def __post_init__(self) -> None:
        name = "RandomErasing"
        object.__setattr__(self, "p", _prob(name, self.p))
        object.__setattr__(self, "scale", _range(name, "scale", self.scale, 0.0, 1.0))
        object.__setattr__(self, "ratio", _range(name, "ratio", self.ratio, 1e-6, 1e6))
        value = self.value
        if isinstance(value, str):
            if value != "random":
                _fail(name, f"value={value!r} must be a number, 3 numbers or 'random'")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        else:
            value = _triple(name, "value", value)
        object.__setattr__(self, "value", value)


__all__ = [
    "CenterCrop", "Decode", "IMAGENET_MEAN", "IMAGENET_STD", "Normalize", "Op", "RandomErasing",
    "RandomFlip", "RandomResizedCrop", "Resize",
]
