"""Which samples an epoch draws, and in what order: a function of (seed, epoch) alone.

The sharding contract deals an epoch's *order* (a sequence of sample indices) to ranks and
batches; by default that order is a permutation of the source. ``sampling=`` replaces it:

- ``Weighted(weights, num_samples=None, replacement=True)``: ``num_samples`` draws (default:
  as many as the source has samples), sample ``i`` with probability ``weights[i] / sum``. With
  ``replacement=False`` no sample appears twice in an epoch (at most as many draws as samples
  of non-zero weight), in a weighted random order (Efraimidis-Spirakis keys).
- ``ClassBalanced(power=1.0, num_samples=None)``: ``Weighted`` with each sample's weight
  ``count(its class) ** -power``, from the source's labels (read in bulk where the source
  keeps them, e.g. a folder's index; otherwise each sample is read once, when the loader is
  made). ``power=1``: every class equally often; ``0``: the plain distribution.

Because the order is a function of (seed, epoch), a run gives the same batches for any
``num_workers``, resumes exactly mid-epoch from ``state_dict`` (which records the sampling),
resumes on another world size with each remaining draw seen once, and ``set_epoch`` gives new
draws. Worked example (``tests/test_sampling.py`` replays it)::

    Weighted([0, 1, 3], num_samples=4), seed 3: epoch 0 draws [1, 2, 2, 2] (sample 0 never,
    sample 2 three times as often as sample 1 in expectation); on 2 ranks with batch 2,
    rank 0 reads [1, 2] and rank 1 reads [2, 2] (positions dealt round-robin as always).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np

from ..errors import SpecError

_CHUNK = 1 << 20  # draws made at a time (bounded scratch memory for any num_samples)


@dataclass(frozen=True, eq=False)
class Weighted:
    """Draw ``num_samples`` samples per epoch with probability proportional to ``weights``."""

    weights: Any
    num_samples: Optional[int] = None
    replacement: bool = True


@dataclass(frozen=True)
class ClassBalanced:
    """Weights ``count(class) ** -power`` from the source's labels (see the module)."""

    power: float = 1.0
    num_samples: Optional[int] = None


Sampling = Union[Weighted, ClassBalanced]


@dataclass(frozen=True, eq=False)
class Draws:
    """A checked ``Weighted``: the epoch order for any (seed, epoch)."""

    weights: np.ndarray  # float64, finite, >= 0, not all zero
    num_samples: int
    replacement: bool
    kind: str = "weighted"

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """The epoch's ``num_samples`` sample indices (int64), in the order they are read."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            [seed, epoch, 0x5EED, 0xD4A7])))
        if self.replacement:
            return _with_replacement(self.weights, self.num_samples, rng)
        return _without_replacement(self.weights, self.num_samples, rng)

    def state(self) -> dict[str, Any]:
        """What ``state_dict`` records: a resumed loader must draw the same orders."""
        digest = hashlib.sha256(self.weights.tobytes()).hexdigest()[:16]
        return {"kind": self.kind, "num_samples": self.num_samples,
                "replacement": self.replacement, "weights": digest}


def _with_replacement(weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` i.i.d. draws: sorted uniforms (normalized partial sums of exponentials, made
    in chunks, twice from the same stream: once for their total) looked up in the weights'
    cumulative sum in one forward sweep, then shuffled in place. Memory: the cumulative sum
    and the output, two arrays of 8 bytes per sample and per draw."""
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    state = rng.bit_generator.state
    total = sum(float(rng.standard_exponential(min(_CHUNK, count + 1 - s)).sum())
                for s in range(0, count + 1, _CHUNK))
    rng.bit_generator.state = state
    out = np.empty(count, dtype=np.int64)
    carry = 0.0
    for start in range(0, count, _CHUNK):
        end = min(count, start + _CHUNK)
        sums = np.cumsum(rng.standard_exponential(end - start)) + carry
        carry = float(sums[-1])
        out[start:end] = np.searchsorted(cdf, sums / total, side="right")
    np.minimum(out, len(weights) - 1, out=out)  # a sum rounded up to the total
    rng.shuffle(out)
    return out


def _without_replacement(weights: np.ndarray, count: int,
                         rng: np.random.Generator) -> np.ndarray:
    with np.errstate(divide="ignore"):
        keys = rng.standard_exponential(len(weights)) / weights  # weight 0: +inf, never drawn
    if count < len(weights):
        chosen = np.argpartition(keys, count - 1)[:count]
        return chosen[np.argsort(keys[chosen])].astype(np.int64, copy=False)
    return np.argsort(keys).astype(np.int64, copy=False)  # continuous keys: no ties to order


def resolve(sampling: Sampling, size: int, labels: Callable[[], np.ndarray]) -> Draws:
    """``sampling`` checked against a source of ``size`` samples (``labels()``: its labels, asked
    only by ClassBalanced); a SpecError naming the argument and what to do otherwise."""
    if isinstance(sampling, ClassBalanced):
        power = sampling.power
        if isinstance(power, bool) or not isinstance(power, (int, float)) \
                or not math.isfinite(power) or power < 0:
            raise SpecError(f"ClassBalanced: power={power!r} must be a finite number >= 0 "
                            "(1: every class equally often; 0: as the data is)")
        found = np.asarray(labels(), dtype=np.int64)
        if len(found) != size or (len(found) and found.min() < 0):
            raise SpecError(f"ClassBalanced: the source's labels must be {size} class indices "
                            ">= 0; give sampling=fl.Weighted(weights) instead")
        counts = np.bincount(found).astype(np.float64)
        weights = counts[found] ** -float(power)
        return _checked(weights, sampling.num_samples, True, "class_balanced", size)
    if isinstance(sampling, Weighted):
        weights = _as_weights(sampling.weights)
        if len(weights) != size:
            raise SpecError(f"Weighted: {len(weights)} weights for a source of {size} samples; "
                            "give one weight per sample, in the source's order")
        if not isinstance(sampling.replacement, bool):
            raise SpecError(f"Weighted: replacement={sampling.replacement!r} must be True or "
                            "False")
        return _checked(weights, sampling.num_samples, sampling.replacement, "weighted", size)
    raise SpecError(f"sampling={sampling!r} must be fl.Weighted(...) or fl.ClassBalanced(...)")


def _as_weights(weights: Any) -> np.ndarray:
    if hasattr(weights, "detach"):  # a torch tensor (WeightedRandomSampler's)
        weights = weights.detach().cpu().numpy()
    try:
        out = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise SpecError(f"Weighted: weights={weights!r:.80} must be numbers, one per "
                        "sample") from None
    if out.ndim != 1:
        raise SpecError(f"Weighted: weights of shape {out.shape} must be one number per sample")
    return np.array(out)  # our own copy: the caller may change theirs


def _checked(weights: np.ndarray, num_samples: Any, replacement: bool, kind: str,
             size: int) -> Draws:
    what = "ClassBalanced" if kind == "class_balanced" else "Weighted"
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        raise SpecError(f"{what}: weight {float(weights[bad[0]])!r} of sample {int(bad[0])} (and "
                        f"{len(bad) - 1} more) must be finite and >= 0")
    nonzero = int(np.count_nonzero(weights))
    if nonzero == 0:
        raise SpecError(f"{what}: every weight is 0; at least one sample must have a weight > 0")
    if num_samples is None:
        num_samples = size if replacement else min(size, nonzero)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples < 1:
        raise SpecError(f"{what}: num_samples={num_samples!r} must be an int >= 1 (draws per "
                        "epoch)")
    if not replacement and num_samples > nonzero:
        raise SpecError(f"{what}: num_samples={num_samples} without replacement, but only "
                        f"{nonzero} samples have a weight > 0; lower num_samples or draw with "
                        "replacement")
    weights.setflags(write=False)
    return Draws(weights, int(num_samples), replacement, kind)
