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


class SampleRngs:
    """``sample_rng(seed, epoch, p)`` for each position ``p`` of a batch, at ~1 us a sample
    instead of ~15: the Philox keys that ``SeedSequence([seed, epoch, p])`` derives are computed
    for the whole batch at once (numpy's SeedSequence hash, vectorized; tested equal), and
    ``get(k)`` re-keys one shared generator. The generator ``get`` returns is valid until the
    next ``get`` (a sample's draws are made before the next sample's)."""

    def __init__(self, seed: int, epoch: int, positions: np.ndarray) -> None:
        self._args = (seed, epoch, positions)
        self._keys: Optional[np.ndarray] = None
        if seed < 2 ** 32 and epoch < 2 ** 32 and (len(positions) == 0 or (
                int(np.min(positions)) >= 0 and int(np.max(positions)) < 2 ** 32)):
            self._keys = philox_keys(seed, epoch, np.asarray(positions))
            self._bits = np.random.Philox(key=0)
            self._generator = np.random.Generator(self._bits)
            self._state = self._bits.state

    def get(self, k: int) -> np.random.Generator:
        if self._keys is None:  # a word past 32 bits: SeedSequence's longer entropy path
            seed, epoch, positions = self._args
            return sample_rng(seed, epoch, int(positions[k]))
        state = self._state
        state["state"] = {"counter": np.zeros(4, np.uint64), "key": self._keys[k]}
        state["buffer_pos"], state["has_uint32"], state["uinteger"] = 4, 0, 0
        self._bits.state = state
        return self._generator


_MASK = 0xFFFFFFFF


def philox_keys(seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """(N, 2) uint64: the Philox key ``Philox(SeedSequence([seed, epoch, p]))`` takes, for each
    position ``p`` (every value below 2**32: one entropy word each). numpy's SeedSequence:
    ``mix_entropy`` into a pool of 4 words, then ``generate_state(2, uint64)``."""
    u32 = np.uint32
    count = len(positions)
    words = [np.full(count, seed, u32), np.full(count, epoch, u32), positions.astype(u32),
             np.zeros(count, u32)]  # the pool's 4th word hashes a 0
    const = 0x43B0D7E5  # INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal const
        value = value ^ u32(const)
        const = (const * 0x931E8875) & _MASK  # MULT_A
        value = value * u32(const)
        return value ^ (value >> u32(16))

    pool = [hashmix(w) for w in words]
    for source in range(4):
        for target in range(4):
            if source != target:
                mixed = u32(0xCA01F9DD) * pool[target] - u32(0x4973F715) * hashmix(pool[source])
                pool[target] = mixed ^ (mixed >> u32(16))
    const = 0x8B51F9DD  # INIT_B
    state = []
    for i in range(4):
        value = pool[i] ^ u32(const)
        const = (const * 0x58F38DED) & _MASK  # MULT_B
        value = value * u32(const)
        state.append((value ^ (value >> u32(16))).astype(np.uint64))
    return np.stack([state[0] | (state[1] << np.uint64(32)),
                     state[2] | (state[3] << np.uint64(32))], 1)


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
    """CenterCrop's box (top, left, height, width) as torchvision places it: inside the image
    at ``round((size - crop) / 2)``; along an axis the crop exceeds, the image padded first,
    ``(crop - size) // 2`` before it (so the box starts that far above / left of the image)."""
    def anchor(size: int, extent: int) -> int:
        return -((extent - size) // 2) if extent > size else int(round((size - extent) / 2.0))

    ch, cw = crop
    return float(anchor(height, ch)), float(anchor(width, cw)), float(ch), float(cw)
