"""The epoch order of a mixture of sources: a function of (seed, epoch) alone.

Component ``k`` (``sizes[k]`` samples, global indices ``offsets[k] ...``) gets ``counts[k]``
places in every epoch: its proportion of ``epoch_size``, rounded by largest remainder so the
counts add up to ``epoch_size`` exactly. Each component is read without replacement along its
own stream of passes (pass ``p`` is a permutation keyed by (seed, component, pass)); epoch
``e`` takes places ``e * counts[k] ... (e + 1) * counts[k] - 1`` of that stream, so when a
component runs out its next pass starts, and no sample repeats before its pass ends. The
components' picks are then interleaved evenly with a random jitter (pick ``i`` of ``k`` at key
``(i + u) / counts[k]``, ``u`` uniform): every stretch of the epoch, and so every rank's share
and every batch, holds each component in proportion to within a sample or two.

Worked example (``tests/test_sampling.py`` replays it): sizes (4, 2), proportions (0.5, 0.5),
epoch_size 6, seed 0: counts (3, 3). Component 1 (global indices 4, 5) has 2 samples, so each
epoch takes 3 places of its stream: epoch 0 its pass 0 (5, 4) and the first of pass 1 (5),
epoch 1 the rest of pass 1 (4) and pass 2 (4, 5). Component 0 takes 3 of its 4 samples in
epoch 0 (1, 0, 3) and the last one (2) and 2 of pass 1 in epoch 1. Interleaved, epoch 0 reads
[5, 1, 0, 4, 5, 3] and epoch 1 [4, 2, 4, 2, 5, 3].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError


def counts(proportions: list[float], epoch_size: int) -> list[int]:
    """Each component's places per epoch: ``p * epoch_size`` by largest remainder (the
    proportions taken relative to their sum, so float rounding never over-counts)."""
    total = sum(proportions)
    raw = [p / total * epoch_size for p in proportions]
    out = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda k: (out[k] - raw[k], k))
    for k in by_remainder[:epoch_size - sum(out)]:
        out[k] += 1
    return out


def check_proportions(proportions: list[Any]) -> list[float]:
    """The proportions as floats, or a SpecError: each > 0 and finite, summing to 1."""
    out = []
    for k, p in enumerate(proportions):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) \
                or p <= 0:
            raise SpecError(f"Mix: component {k}'s proportion {p!r} must be a number > 0")
        out.append(float(p))
    total = sum(out)
    if abs(total - 1.0) > 1e-6:
        raise SpecError(f"Mix: the proportions {out} sum to {total:g}, not 1; they are not "
                        "normalized for you: give proportions that sum to 1")
    return out


@dataclass(frozen=True, eq=False)
class MixtureOrder:
    """The epoch orders of a mixture: ``sizes`` of the components, ``counts`` per epoch."""

    sizes: tuple[int, ...]
    counts: tuple[int, ...]
    kind: str = "mix"

    @property
    def num_samples(self) -> int:
        return sum(self.counts)

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """The epoch's global sample indices (component offsets added), in reading order."""
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            [seed, epoch, 0x5EED, 0x313C])))
        picks = np.empty(self.num_samples, dtype=np.int64)
        keys = np.empty(self.num_samples, dtype=np.float64)
        at = 0
        for k, (size, count) in enumerate(zip(self.sizes, self.counts)):
            picks[at:at + count] = offsets[k] + self._stream(seed, k, size, epoch * count, count)
            keys[at:at + count] = (np.arange(count) + rng.random(count)) / count
            at += count
        # each component's keys increase: a merge of sorted runs, which a stable sort finds
        where = np.argsort(keys, kind="stable")
        del keys
        return picks[where]

    @staticmethod
    def _stream(seed: int, k: int, size: int, start: int, count: int) -> np.ndarray:
        """Places ``start ... start + count - 1`` of component ``k``'s stream of passes."""
        out = np.empty(count, dtype=np.int64)
        done = 0
        while done < count:
            pass_, at = divmod(start + done, size)
            take = min(size - at, count - done)
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
                [seed, k, pass_, 0x5EED, 0x313D])))
            out[done:done + take] = rng.permutation(size)[at:at + take]
            done += take
        return out

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "sizes": list(self.sizes), "counts": list(self.counts)}
