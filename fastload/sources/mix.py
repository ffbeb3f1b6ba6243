"""``fl.Mix``: several sources read as one, each in its own proportion of every epoch.

Sample indices are global: component 0's samples first, then component 1's, and so on
(``batch.indices`` are indices into the Mix; ``batch.source`` says which component each sample
came from). Labels: when every component has class names (``classes``), they are mapped by
name onto the sorted union of all names (a class found in two components is one class);
when none has, labels are taken as given; a mixture of both is refused, since labels could
not be matched. The epoch order is ``fastload.order.mixture``'s.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..errors import SourceError, SpecError
from ..order.mixture import MixtureOrder, check_proportions, counts
from .base import labels_of


class Mix:
    """``Mix([(source_a, 0.7), (source_b, 0.3)], epoch_size=None)``: a source whose epoch
    draws ``0.7 * epoch_size`` samples from ``source_a`` and ``0.3 * epoch_size`` from
    ``source_b`` (exactly, by largest remainder), each without replacement along its own
    passes. ``epoch_size`` defaults to the components' total size. A component may be any
    source or path ``fl.loader`` accepts."""

    def __init__(self, components: Sequence[Any], epoch_size: Optional[int] = None) -> None:
        from . import open_source

        if isinstance(components, (str, bytes)) or not hasattr(components, "__iter__"):
            raise SpecError("Mix: give a list of (source, proportion) pairs")
        pairs = list(components)
        if not pairs:
            raise SpecError("Mix: give at least one (source, proportion) pair")
        for k, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise SpecError(f"Mix: component {k} is {pair!r:.80}; give (source, proportion)")
        proportions = check_proportions([p for _, p in pairs])
        self.components = [open_source(s) for s, _ in pairs]
        self.sizes = [len(s) for s in self.components]
        for k, size in enumerate(self.sizes):
            if size == 0:
                raise SpecError(f"Mix: component {k} ({self.components[k].describe()}) is empty")
        total = sum(self.sizes)
        if epoch_size is None:
            epoch_size = total
        if isinstance(epoch_size, bool) or not isinstance(epoch_size, int) or epoch_size < 1:
            raise SpecError(f"Mix: epoch_size={epoch_size!r} must be an int >= 1")
        self.proportions = proportions
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.order = MixtureOrder(tuple(self.sizes), tuple(counts(proportions, epoch_size)))
        self.classes, self._maps = _class_maps(self.components)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def component_of(self, indices: Any) -> np.ndarray:
        """The component number of each global sample index."""
        return np.searchsorted(self.offsets[1:], np.asarray(indices), side="right")

    def _split(self, index: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.offsets[1:], index, side="right"))
        return k, index - int(self.offsets[k])

    def read(self, index: int) -> tuple[bytes, int]:
        k, local = self._split(index)
        data, label = self.components[k].read(local)
        table = self._maps[k]
        if table is None:
            return data, label
        if not 0 <= label < len(table):
            raise SourceError(f"{self.locate(index)}: label {label} is not one of the "
                              f"component's {len(table)} classes")
        return data, int(table[label])

    @property
    def labels(self) -> np.ndarray:
        """Every sample's (mapped) label, from the components' own ``labels`` where they keep
        them in bulk, else read sample by sample."""
        parts = []
        for k, source in enumerate(self.components):
            own = labels_of(source)
            table = self._maps[k]
            parts.append(own if table is None else table[own])
        return np.concatenate(parts)

    def prefetch(self, indices: Any, ahead: Any = None) -> None:
        """Pass a batch's reads on to the components that fetch over a network."""
        for k, source in enumerate(self.components):
            fetch = getattr(source, "prefetch", None)
            if fetch is None:
                continue
            mine = _local(self, k, indices)
            if len(mine):
                fetch(mine, None if ahead is None else _local(self, k, ahead))

    def locate(self, index: int) -> str:
        k, local = self._split(index)
        return f"{self.components[k].locate(local)} (Mix component {k}, sample {index})"

    def describe(self) -> dict[str, Any]:
        return {"kind": "mix", "samples": len(self), "epoch_size": self.order.num_samples,
                "components": [{"proportion": p, "count": c, **s.describe()} for s, p, c in
                               zip(self.components, self.proportions, self.order.counts)]}

    def __repr__(self) -> str:
        parts = ", ".join(f"({s!r}, {p:g})" for s, p in zip(self.components, self.proportions))
        return f"Mix([{parts}], epoch_size={self.order.num_samples})"


def _local(mix: Mix, k: int, indices: Any) -> np.ndarray:
    """The indices of ``indices`` that fall in component ``k``, as its own indices."""
    indices = np.asarray(indices, dtype=np.int64)
    mine = indices[mix.component_of(indices) == k]
    return mine - mix.offsets[k]


def _class_maps(components: list[Any]) -> tuple[Optional[list[str]], list[Optional[np.ndarray]]]:
    """The union of the components' class names and each component's label -> union label
    table; (None, [None, ...]) when no component has names."""
    names = [getattr(s, "classes", None) for s in components]
    if all(n is None for n in names):
        return None, [None] * len(components)
    missing = [k for k, n in enumerate(names) if n is None]
    if missing:
        raise SpecError(f"Mix: component(s) {missing} have no class names while the others "
                        "do, so their labels cannot be matched to the others' classes; give "
                        "every component class names (classes=) or none")
    union = sorted({name for n in names for name in n})
    where = {name: i for i, name in enumerate(union)}
    return union, [np.asarray([where[name] for name in n], dtype=np.int64) for n in names]
