"""Rank and world size: given explicitly, or read from torch.distributed at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from ..errors import SpecError


@dataclass(frozen=True)
class DistInfo:
    """This process's rank and the number of ranks sharing the dataset."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        for name in ("rank", "world_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpecError(f"dist: {name}={value!r} must be a non-negative int")
        if self.world_size < 1:
            raise SpecError(f"dist: world_size={self.world_size} must be >= 1")
        if self.rank >= self.world_size:
            raise SpecError(f"dist: rank={self.rank} is out of range for world_size="
                            f"{self.world_size} (ranks are 0..{self.world_size - 1})")


DistArg = Union[None, DistInfo, tuple[int, int]]


def check_dist(dist: Any) -> Optional[DistInfo]:
    """Validate the ``dist=`` argument once; None stays None (resolved at each epoch start)."""
    if dist is None or isinstance(dist, DistInfo):
        return dist
    if isinstance(dist, (tuple, list)) and len(dist) == 2:
        return DistInfo(*dist)
    raise SpecError(f"dist={dist!r} must be None, (rank, world_size) or fastload.DistInfo")


def resolve(dist: Optional[DistInfo]) -> DistInfo:
    """Explicit dist as given; otherwise torch.distributed's rank/world if initialized, else 0/1."""
    if dist is not None:
        return dist
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        return DistInfo(td.get_rank(), td.get_world_size())
    return DistInfo(0, 1)
