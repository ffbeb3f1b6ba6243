"""Values that follow the epoch: progressive resizing (``fl.by_epoch({0: 160, 10: 176})``).

A ``ByEpoch`` maps first epochs to values; at epoch ``e`` the value of the largest key
``<= e`` applies. It is frozen data (hashable, JSON as ``{"by_epoch": [[epoch, value], ...]}``).
Worked example, ``by_epoch({0: 160, 10: 176, 14: 192})``: epochs 0-9 -> 160, 10-13 -> 176,
14 and later -> 192.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SpecError


@dataclass(frozen=True)
class ByEpoch:
    steps: tuple[tuple[int, Any], ...]  # (first epoch, value), increasing, the first at 0

    def at(self, epoch: int) -> Any:
        value = self.steps[0][1]
        for first, v in self.steps:
            if first > epoch:
                break
            value = v
        return value

    def values(self) -> list[Any]:
        return [v for _, v in self.steps]

    def map(self, fn: Any) -> "ByEpoch":
        return ByEpoch(tuple((e, fn(v)) for e, v in self.steps))

    def to_json(self) -> dict[str, Any]:
        return {"by_epoch": [[e, list(v) if isinstance(v, tuple) else v] for e, v in self.steps]}


def by_epoch(mapping: Any) -> ByEpoch:
    """``{first_epoch: value}`` (keys ints >= 0, one of them 0) -> a ByEpoch."""
    if isinstance(mapping, ByEpoch):
        return mapping
    if isinstance(mapping, dict) and set(mapping) == {"by_epoch"}:  # the JSON form
        mapping = {int(e): tuple(v) if isinstance(v, list) else v for e, v in mapping["by_epoch"]}
    if not isinstance(mapping, dict) or not mapping:
        raise SpecError(f"by_epoch: {mapping!r} must be a non-empty dict {{first_epoch: value}}")
    for epoch in mapping:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise SpecError(f"by_epoch: epoch {epoch!r} must be an int >= 0")
    if 0 not in mapping:
        raise SpecError(f"by_epoch: {mapping!r} must give a value for epoch 0")
    return ByEpoch(tuple(sorted(mapping.items())))
