"""Batch ops: Mixup, CutMix and the choice of one per batch, with label smoothing.

They run on the finished batch (after Normalize and RandomErasing), on the target device, and
turn the labels into soft targets: float32 (B, num_classes). One draw per batch (lambda, the
CutMix box, which of the two) comes from (seed, epoch, the batch's first global position)
alone, so resume and the worker count do not change it.

Pairing: each real sample is mixed with the next real sample of the batch (a roll by one, as
torchvision's MixUp/CutMix do); the samples marked ``padded`` (repeats that even out the ranks'
batch counts) are mixed only among themselves, so a repeat never leaks into a real sample.

Semantics follow timm's ``Mixup`` in ``mode="batch"``: lambda ~ Beta(alpha, alpha); the CutMix
box has sides ``sqrt(1 - lambda)`` of the image's, centred on a uniform integer pixel, clipped
to the image, and lambda is then corrected to the unboxed area; label smoothing spreads
``label_smoothing`` over every class (``off = s / C``, ``on = 1 - s + off``) before mixing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .basic import Op, _fail, _prob


def _alpha(op: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        _fail(op, f"{name}={value!r} must be a number >= 0 (0 turns it off)")
    return float(value)


def _classes(op: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        _fail(op, f"num_classes={value!r} must be an int >= 2 (the labels become "
                  "(batch, num_classes) soft targets)")
    return value


def _smoothing(op: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        _fail(op, f"label_smoothing={value!r} must be in [0, 1)")
    return float(value)


class MixingOp(Op):
    """What the three batch ops share: classes, smoothing, probability, and the draw."""

    num_classes: int
    label_smoothing: float
    p: float

    def _check(self, name: str) -> None:
        object.__setattr__(self, "num_classes", _classes(name, self.num_classes))
        object.__setattr__(self, "label_smoothing", _smoothing(name, self.label_smoothing))
        object.__setattr__(self, "p", _prob(name, self.p))

    def alphas(self) -> tuple[float, float]:
        """(mixup alpha, cutmix alpha); 0 where the op does not do that kind."""
        raise NotImplementedError

    def draw(self, seed: int, epoch: int, first_position: int, height: int,
             width: int) -> "MixDraw":
        """The batch's mixing, from (seed, epoch, first position) alone."""
        rng = np.random.Generator(np.random.Philox(
            np.random.SeedSequence([seed, epoch, first_position, 0x4D1C])))
        if rng.random() >= self.p:
            return NO_MIX
        mixup, cutmix = self.alphas()
        use_cutmix = cutmix > 0 and (mixup == 0 or rng.random() < getattr(self, "switch_prob"))
        if use_cutmix:
            lam = float(rng.beta(cutmix, cutmix))
            cut = math.sqrt(1.0 - lam)
            cut_h, cut_w = int(height * cut), int(width * cut)
            cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
            y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
            x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
            return MixDraw("cutmix", lam, (y0, y1, x0, x1))
        if mixup > 0:
            return MixDraw("mixup", float(rng.beta(mixup, mixup)), (0, 0, 0, 0))
        return NO_MIX


class MixDraw(NamedTuple):
    kind: str  # "none" | "mixup" | "cutmix"
    lam: float  # weight of the sample's own image and label
    box: tuple[int, int, int, int]  # cutmix: y0, y1, x0, x1 pasted from the partner


NO_MIX = MixDraw("none", 1.0, (0, 0, 0, 0))


@dataclass(frozen=True, kw_only=True)
class Mixup(MixingOp):
    """Zhang et al. 2018: blend each image with its partner, lambda ~ Beta(alpha, alpha)."""

    alpha: float = 1.0
    num_classes: int
    label_smoothing: float = 0.0
    p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _alpha("Mixup", "alpha", self.alpha))
        self._check("Mixup")

    def alphas(self) -> tuple[float, float]:
        return self.alpha, 0.0


@dataclass(frozen=True, kw_only=True)
class CutMix(MixingOp):
    """Yun et al. 2019: paste a box of the partner, area 1 - lambda, lambda ~ Beta(alpha, alpha)."""

    alpha: float = 1.0
    num_classes: int
    label_smoothing: float = 0.0
    p: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _alpha("CutMix", "alpha", self.alpha))
        self._check("CutMix")

    def alphas(self) -> tuple[float, float]:
        return 0.0, self.alpha


@dataclass(frozen=True, kw_only=True)
class MixupOrCutMix(MixingOp):
    """timm's Mixup: per batch, CutMix with probability ``switch_prob``, else Mixup."""

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5
    num_classes: int
    label_smoothing: float = 0.1
    p: float = 1.0

    def __post_init__(self) -> None:
        name = "MixupOrCutMix"
        for field in ("mixup_alpha", "cutmix_alpha"):
            object.__setattr__(self, field, _alpha(name, field, getattr(self, field)))
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            _fail(name, "mixup_alpha and cutmix_alpha are both 0: nothing would be mixed")
        if isinstance(self.switch_prob, bool) or not isinstance(self.switch_prob, (int, float)) \
                or not 0 <= self.switch_prob <= 1:
            _fail(name, f"switch_prob={self.switch_prob!r} must be a probability in [0, 1]")
        object.__setattr__(self, "switch_prob", float(self.switch_prob))
        self._check(name)

    def alphas(self) -> tuple[float, float]:
        return self.mixup_alpha, self.cutmix_alpha


def partners(padded: np.ndarray) -> np.ndarray:
    """Each sample's partner: the next real sample (a roll by one among the real ones), and
    the next padded one among the padded. Worked example: padded = [F, F, F, T, T] ->
    [1, 2, 0, 4, 3]."""
    perm = np.arange(len(padded))
    for group in (np.flatnonzero(~padded), np.flatnonzero(padded)):
        if len(group) > 1:
            perm[group] = np.roll(group, -1)
    return perm


MIXING_OPS: tuple[type, ...] = (Mixup, CutMix, MixupOrCutMix)
__all__ = ["CutMix", "MixDraw", "Mixup", "MixupOrCutMix", "MixingOp", "partners"]
