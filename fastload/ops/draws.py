"""Per-sample random draws, keyed by (seed, epoch, global position) and nothing else.

Both backends call these functions, in pipeline order, with a generator from ``sample_rng``: so
the same seed gives the same crop boxes, flips and erasing rectangles whatever the worker count,
the backend, or whether the run was resumed.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

Box = tuple[int, int, int, int]  # top, left, height, width


def sample_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """A generator that depends only on (seed, epoch, position)."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, epoch, position])))


def _random_box(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
                ratio: tuple[float, float], erase: bool) -> Optional[Box]:
    """torchvision's 10-try rejection sampling of a box of area ~ U(scale), log-aspect ~ U(ratio).

    As in torchvision, RandomResizedCrop takes ``width = sqrt(area * aspect)`` and needs the box
    inside the image; RandomErasing takes ``height = sqrt(area * aspect)`` and needs it smaller.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        long_side = int(round(math.sqrt(target * aspect)))
        short_side = int(round(math.sqrt(target / aspect)))
        if erase:
            h, w = long_side, short_side
            fits = h < height and w < width
        else:
            h, w = short_side, long_side
            fits = 0 < w <= width and 0 < h <= height
        if fits:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return None


def crop_box(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
             ratio: tuple[float, float]) -> Box:
    """RandomResizedCrop's box in an image of (height, width), with the center-crop fallback."""
    box = _random_box(rng, height, width, scale, ratio, erase=False)
    if box is not None:
        return box
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def flip(rng: np.random.Generator, p: float) -> bool:
    """RandomFlip's coin."""
    return bool(rng.random() < p)


def erase_box(rng: np.random.Generator, height: int, width: int, p: float,
              scale: tuple[float, float], ratio: tuple[float, float]) -> Box:
    """RandomErasing's rectangle in the output image; (0, 0, 0, 0) means no erasing."""
    if rng.random() >= p:
        return (0, 0, 0, 0)
    box = _random_box(rng, height, width, scale, ratio, erase=True)
    return box if box is not None else (0, 0, 0, 0)


def center_box(height: int, width: int, crop: tuple[int, int]) -> tuple[float, float, float, float]:
    """CenterCrop's box (top, left, height, width), torchvision's rounding; may exceed the image."""
    ch, cw = crop
    return float(int(round((height - ch) / 2.0))), float(int(round((width - cw) / 2.0))), float(ch), float(cw)
