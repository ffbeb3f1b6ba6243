"""Per-sample photometric ops on the uint8 crop: ColorJitter, RandomGrayscale, RandomSolarize,
GaussianBlur and DeiT III's ThreeAugment (torchvision v2 / DeiT III semantics).

Each op is frozen data that validates itself and, given the sample's generator, draws its
``steps``: concrete ``(kernel, value)`` pairs that the backend executes in order (kernels in
``fastload/backends/torch/pixel.py``). Draws happen in the order listed, after the geometry and flip
draws and before RandomErasing's, so a pipeline without these ops keeps its old draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from .basic import Op, _fail, _prob

Step = tuple[str, Any]  # (kernel name, its value)
Range = Optional[tuple[float, float]]


def _jitter(op: str, name: str, value: Any, center: float, bound: tuple[float, float]) -> Range:
    """torchvision's ColorJitter argument: a number v -> [center - v, center + v] (clipped at
    ``bound``), a (min, max) pair as is; 0 or None -> off."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (math.isfinite(value) and value >= 0):
            _fail(op, f"{name}={value!r} must be a number >= 0 or a (min, max) pair")
        if value == 0:
            return None
        low, high = center - value, center + value
        if name != "hue":
            low = max(low, 0.0)
    else:
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            _fail(op, f"{name}={value!r} must be a number >= 0 or a (min, max) pair")
        if not low <= high:
            _fail(op, f"{name}={tuple(value)!r} must be increasing")
    if low < bound[0] or high > bound[1]:
        _fail(op, f"{name}={value!r} gives [{low:g}, {high:g}], outside [{bound[0]:g}, {bound[1]:g}]")
    if low == high == center:
        return None
    return (low, high)


@dataclass(frozen=True)
class ColorJitter(Op):
    """torchvision's ColorJitter: brightness, contrast, saturation factors ~ U[max(0, 1 - v),
    1 + v] and a hue shift ~ U[-v, v] (v <= 0.5), applied in a random order each sample."""

    brightness: Any = 0.0
    contrast: Any = 0.0
    saturation: Any = 0.0
    hue: Any = 0.0

    def __post_init__(self) -> None:
        inf = float("inf")
        for name, center, bound in (("brightness", 1.0, (0.0, inf)), ("contrast", 1.0, (0.0, inf)),
                                    ("saturation", 1.0, (0.0, inf)), ("hue", 0.0, (-0.5, 0.5))):
            object.__setattr__(self, name, _jitter("ColorJitter", name, getattr(self, name),
                                                   center, bound))
        if all(getattr(self, n) is None for n in ("brightness", "contrast", "saturation", "hue")):
            _fail("ColorJitter", "every factor is 0: it would do nothing")

    def steps(self, rng: np.random.Generator, size: tuple[int, int] = (0, 0)) -> tuple[Step, ...]:
        order = rng.permutation(4)
        names = ("brightness", "contrast", "saturation", "hue")
        factors = [None if r is None else float(rng.uniform(r[0], r[1]))
                   for r in (getattr(self, n) for n in names)]
        return tuple((names[k], factors[k]) for k in order if factors[k] is not None)


@dataclass(frozen=True)
class RandomGrayscale(Op):
    """With probability p, ITU-R 601 luma (0.2989 R + 0.587 G + 0.114 B) in all 3 channels."""

    p: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _prob("RandomGrayscale", self.p))

    def steps(self, rng: np.random.Generator, size: tuple[int, int] = (0, 0)) -> tuple[Step, ...]:
        return (("grayscale", None),) if rng.random() < self.p else ()


@dataclass(frozen=True)
class RandomSolarize(Op):
    """With probability p, invert every value >= threshold (0-255 scale)."""

    threshold: float = 128.0
    p: float = 0.5

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 255:
            _fail("RandomSolarize", f"threshold={t!r} must be in [0, 255]")
        object.__setattr__(self, "threshold", float(t))
        object.__setattr__(self, "p", _prob("RandomSolarize", self.p))

    def steps(self, rng: np.random.Generator, size: tuple[int, int] = (0, 0)) -> tuple[Step, ...]:
        return (("solarize", self.threshold),) if rng.random() < self.p else ()


def fit_kernel(size: int, side: int) -> int:
    """A blur kernel of ``size`` cut to fit an image ``side`` pixels long (reflect padding
    needs the kernel's half-width below the side): the largest odd size <= 2 * (side // 2) - 1."""
    return min(size, 2 * (side // 2) - 1 or 1)


def _odd_kernel(given: Any) -> tuple[int, int]:
    value = (given, given) if isinstance(given, int) and not isinstance(given, bool) else given
    try:
        kx, ky = value
    except (TypeError, ValueError):
        _fail("GaussianBlur", f"kernel_size={given!r} must be an odd int or (x, y) odd ints")
    if not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 and k % 2 for k in (kx, ky)):
        _fail("GaussianBlur", f"kernel_size={given!r} must be positive and odd")
    return (kx, ky)


@dataclass(frozen=True)
class GaussianBlur(Op):
    """torchvision's GaussianBlur: sigma ~ U[sigma], a separable Gaussian of ``kernel_size``
    (reflect padding), with probability p (1 as torchvision)."""

    kernel_size: Union[int, tuple[int, int]] = 23
    sigma: tuple[float, float] = (0.1, 2.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel_size", _odd_kernel(self.kernel_size))
        sigma = self.sigma
        if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            sigma = (sigma, sigma)
        try:
            low, high = (float(s) for s in sigma)
        except (TypeError, ValueError):
            _fail("GaussianBlur", f"sigma={self.sigma!r} must be a number or a (min, max) pair")
        if not 0 < low <= high:
            _fail("GaussianBlur", f"sigma={self.sigma!r} must be positive and increasing")
        object.__setattr__(self, "sigma", (low, high))
        object.__setattr__(self, "p", _prob("GaussianBlur", self.p))

    def steps(self, rng: np.random.Generator, size: tuple[int, int] = (0, 0)) -> tuple[Step, ...]:
        if rng.random() >= self.p:
            return ()
        sigma = float(rng.uniform(*self.sigma))
        return (("blur", (*self.kernel_size, sigma)),)


@dataclass(frozen=True)
class ThreeAugment(Op):
    """DeiT III's 3-Augment: one of grayscale, solarize (threshold 128) or Gaussian blur
    (sigma ~ U[0.1, 2.0], kernel 2*ceil(3 sigma)+1), chosen uniformly per sample."""

    def steps(self, rng: np.random.Generator, size: tuple[int, int] = (0, 0)) -> tuple[Step, ...]:
        choice = int(rng.integers(3))
        if choice == 0:
            return (("grayscale", None),)
        if choice == 1:
            return (("solarize", 128.0),)
        sigma = float(rng.uniform(0.1, 2.0))
        k = 2 * math.ceil(3 * sigma) + 1
        return (("blur", (k, k, sigma)),)


PHOTOMETRIC_OPS: tuple[type, ...] = (ColorJitter, RandomGrayscale, RandomSolarize, GaussianBlur,
                                     ThreeAugment)
