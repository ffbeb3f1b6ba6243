"""Subsets and splits of any source: ``fl.subset(source, indices)`` and
``fl.split(source, {"train": 0.9, "val": 0.1}, seed=0, stratify=True)``.

A subset is a source of its own (its sample ``i`` is the source's ``indices[i]``) that keeps
the source's class names, bulk labels and network prefetch, and whose ``locate`` names the
original file with both indices. It is a plain source for the loader: sharding, resume, DDP
and ``on_error`` work on it as on any other.

``split`` is deterministic (a function of the seed), puts every sample in exactly one part
(part sizes by largest remainder), and with ``stratify=True`` splits each class on its own, so
every part holds each class in proportion (within one sample per class). Each part lists its
samples in the source's order.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..errors import SpecError
from ..order.mixture import counts
from .base import labels_of


class Subset:
    """The samples ``indices`` (int64, each in range) of ``source``, in that order."""

    def __init__(self, source: Any, indices: Any) -> None:
        from . import open_source

        self.source = open_source(source)
        try:
            chosen = np.asarray(indices, dtype=np.int64)
        except (TypeError, ValueError):
            raise SpecError(f"subset: indices={indices!r:.80} must be sample numbers") from None
        if chosen.ndim != 1:
            raise SpecError(f"subset: indices of shape {chosen.shape} must be one list of "
                            "sample numbers")
        bad = np.flatnonzero((chosen < 0) | (chosen >= len(self.source)))
        if len(bad):
            raise SpecError(f"subset: index {int(chosen[bad[0]])} (at {int(bad[0])}) is outside "
                            f"the source's {len(self.source)} samples")
        self.indices = chosen
        self.indices.setflags(write=False)
        self.classes = getattr(self.source, "classes", None)
        self.multi_label = getattr(self.source, "multi_label", False)
        self.num_classes = getattr(self.source, "num_classes", None)
        self.has_masks = getattr(self.source, "has_masks", False)

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, index: int) -> Any:
        return self.source.read(int(self.indices[index]))

    def locate(self, index: int) -> str:
        return f"{self.source.locate(int(self.indices[index]))} (subset sample {index})"

    @property
    def labels(self) -> Any:
        """The source's bulk labels of these samples (None where the source keeps none)."""
        own = getattr(self.source, "labels", None)
        return None if own is None else np.asarray(own)[self.indices]

    def prefetch(self, indices: Any, ahead: Any = None) -> None:
        fetch = getattr(self.source, "prefetch", None)
        if fetch is not None:
            fetch(self.indices[np.asarray(indices, dtype=np.int64)],
                  None if ahead is None else self.indices[np.asarray(ahead, dtype=np.int64)])

    def describe(self) -> dict[str, Any]:
        return {"kind": "subset", "samples": len(self), "of": self.source.describe()}

    def __repr__(self) -> str:
        return f"Subset({self.source!r}, samples={len(self)})"


def subset(source: Any, indices: Any) -> Subset:
    """The samples ``indices`` of ``source`` as a source (see ``Subset``)."""
    return Subset(source, indices)


def split(source: Any, parts: Mapping[str, float], *, seed: int = 0,
          stratify: bool = False) -> dict[str, Subset]:
    """``{name: Subset}``: every sample of ``source`` in exactly one part, part ``name`` holding
    the fraction ``parts[name]`` (the fractions are > 0 and sum to 1). ``stratify``: split each
    class on its own (labels read in bulk where the source keeps them, else sample by
    sample)."""
    from . import open_source

    source = open_source(source)
    if not isinstance(parts, Mapping) or not parts:
        raise SpecError(f"split: parts={parts!r:.80} must be a dict of name -> fraction")
    names = list(parts)
    fractions = [parts[n] for n in names]
    for name, f in zip(names, fractions):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) \
                or f <= 0:
            raise SpecError(f"split: part {name!r} has fraction {f!r}; each must be a number > 0")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise SpecError(f"split: the fractions {fractions} sum to {sum(fractions):g}, not 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"split: seed={seed!r} must be an int >= 0")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x5B17])))
    if stratify:
        labels = labels_of(source)
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    else:
        groups = [np.arange(len(source), dtype=np.int64)]
    chosen: list[list[np.ndarray]] = [[] for _ in names]
    for group in groups:
        shuffled = rng.permutation(group)
        start = 0
        for k, count in enumerate(counts(fractions, len(group))):
            chosen[k].append(shuffled[start:start + count])
            start += count
    return {name: Subset(source, np.sort(np.concatenate(picks)))
            for name, picks in zip(names, chosen)}
