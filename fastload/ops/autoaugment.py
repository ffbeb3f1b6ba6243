"""TrivialAugmentWide and RandAugment: torchvision v2's op lists and magnitude bins, drawn from
the sample's generator (never a global RNG), plus timm's magnitude noise for RandAugment.

Each op is a (name, magnitude table, signed) entry; a draw picks the op, the magnitude (a bin
of the table; RandAugment: the fixed ``magnitude`` bin, with Gaussian noise of
``magnitude_std`` bins when set, clipped to the table, as timm's ``mstd``) and, for signed ops,
a sign (each way with probability 1/2). The result is one or two kernel steps for the backend
(``fastload/backends/torch/pixel.py``): geometric ops use nearest sampling and fill 0, as
torchvision's defaults; enhance ops use the factor ``1 + magnitude``.

Draw order per op: which op (uniform), [TrivialAugment: the bin (uniform)], [RandAugment with
``magnitude_std``: the noise], the sign (signed ops with a magnitude), [RandAugment with
``p < 1``: whether to apply it, drawn first].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .basic import Op, _fail, _prob

Step = tuple[str, Any]


def _linear(top: float) -> Callable[[float, int], float]:
    """torchvision's ``linspace(0, top, bins)[m]``, for any real bin m."""
    return lambda m, bins: top * m / (bins - 1)


def _posterize(levels: int) -> Callable[[float, int], float]:
    """``8 - round(m / ((bins - 1) / levels))`` bits."""
    return lambda m, bins: float(8 - int(round(m / ((bins - 1) / levels))))


def _solarize(m: float, bins: int) -> float:
    return 255.0 * (1.0 - m / (bins - 1))  # linspace(1, 0, bins)[m] on the 0-255 scale


def _steps(name: str, value: float) -> tuple[Step, ...]:
    """The kernel step(s) of one drawn op."""
    if name == "Identity":
        return ()
    if name in ("ShearX", "ShearY"):
        return (("shear_x" if name == "ShearX" else "shear_y", math.degrees(math.atan(value))),)
    if name in ("TranslateX", "TranslateY"):
        return (("translate", (int(value), 0) if name == "TranslateX" else (0, int(value))),)
    if name == "Rotate":
        return (("rotate", value),)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        kernel = {"Color": "saturation"}.get(name, name.lower())
        return ((kernel, 1.0 + value),)
    if name == "Posterize":
        return (("posterize", int(value)),)
    if name == "Solarize":
        return (("solarize", value),)
    return ((name.lower(), None),)  # AutoContrast, Equalize


# (name, magnitude of bin m of ``bins``, signed); None: no magnitude
TRIVIAL_WIDE: tuple[tuple[str, Any, bool], ...] = (
    ("Identity", None, False),
    ("ShearX", _linear(0.99), True), ("ShearY", _linear(0.99), True),
    ("TranslateX", _linear(32.0), True), ("TranslateY", _linear(32.0), True),
    ("Rotate", _linear(135.0), True),
    ("Brightness", _linear(0.99), True), ("Color", _linear(0.99), True),
    ("Contrast", _linear(0.99), True), ("Sharpness", _linear(0.99), True),
    ("Posterize", _posterize(6), False), ("Solarize", _solarize, False),
    ("AutoContrast", None, False), ("Equalize", None, False),
)


def _rand_augment_ops(height: int, width: int) -> tuple[tuple[str, Any, bool], ...]:
    return (
        ("Identity", None, False),
        ("ShearX", _linear(0.3), True), ("ShearY", _linear(0.3), True),
        ("TranslateX", _linear(150.0 / 331.0 * width), True),
        ("TranslateY", _linear(150.0 / 331.0 * height), True),
        ("Rotate", _linear(30.0), True),
        ("Brightness", _linear(0.9), True), ("Color", _linear(0.9), True),
        ("Contrast", _linear(0.9), True), ("Sharpness", _linear(0.9), True),
        ("Posterize", _posterize(4), False), ("Solarize", _solarize, False),
        ("AutoContrast", None, False), ("Equalize", None, False),
    )


def _bins(op: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        _fail(op, f"num_magnitude_bins={value!r} must be an int >= 2")
    return value


@dataclass(frozen=True)
class TrivialAugmentWide(Op):
    """Müller & Hutter 2021, torchvision's TrivialAugmentWide: one op of 14, a uniform
    magnitude bin of ``num_magnitude_bins``, a random sign."""

    num_magnitude_bins: int = 31

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_magnitude_bins",
                           _bins("TrivialAugmentWide", self.num_magnitude_bins))

    def steps(self, rng: np.random.Generator, size: tuple[int, int] = (0, 0)) -> tuple[Step, ...]:
        name, table, signed = TRIVIAL_WIDE[int(rng.integers(len(TRIVIAL_WIDE)))]
        value = 0.0
        if table is not None:
            bins = self.num_magnitude_bins
            value = table(int(rng.integers(bins)), bins)
            if signed and rng.random() <= 0.5:
                value = -value
        return _steps(name, value)


@dataclass(frozen=True)
class RandAugment(Op):
    """Cubuk et al. 2020, torchvision's RandAugment: ``num_ops`` ops of 14, each at bin
    ``magnitude`` of ``num_magnitude_bins`` (with timm's noise: + N(0, magnitude_std) bins,
    clipped), a random sign, each applied with probability ``p`` (timm's recipes: 0.5)."""

    num_ops: int = 2
    magnitude: int = 9
    num_magnitude_bins: int = 31
    magnitude_std: float = 0.0
    p: float = 1.0

    def __post_init__(self) -> None:
        name = "RandAugment"
        if isinstance(self.num_ops, bool) or not isinstance(self.num_ops, int) or self.num_ops < 1:
            _fail(name, f"num_ops={self.num_ops!r} must be an int >= 1")
        bins = _bins(name, self.num_magnitude_bins)
        if isinstance(self.magnitude, bool) or not isinstance(self.magnitude, int) or \
                not 0 <= self.magnitude < bins:
            _fail(name, f"magnitude={self.magnitude!r} must be an int bin in [0, {bins - 1}]")
        std = self.magnitude_std
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not (
                math.isfinite(std) and std >= 0):
            _fail(name, f"magnitude_std={std!r} must be a number >= 0")
        object.__setattr__(self, "magnitude_std", float(std))
        object.__setattr__(self, "p", _prob(name, self.p))

    def steps(self, rng: np.random.Generator, size: tuple[int, int] = (224, 224)) -> tuple[Step, ...]:
        ops = _rand_augment_ops(*size)
        bins = self.num_magnitude_bins
        out: list[Step] = []
        for _ in range(self.num_ops):
            if self.p < 1.0 and rng.random() >= self.p:
                continue
            name, table, signed = ops[int(rng.integers(len(ops)))]
            value = 0.0
            if table is not None:
                m = float(self.magnitude)
                if self.magnitude_std > 0:
                    m = min(max(rng.normal(m, self.magnitude_std), 0.0), bins - 1.0)
                value = table(m, bins)
                if signed and rng.random() <= 0.5:
                    value = -value
            out.extend(_steps(name, value))
        return tuple(out)


AUTOAUGMENT_OPS: tuple[type, ...] = (TrivialAugmentWide, RandAugment)
