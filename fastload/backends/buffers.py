"""Batch buffers reused once the caller has let go of them: the one reuse mechanism of both
backends' CPU outputs.

A buffer is made for the largest batch (the largest image size of a by_epoch schedule, the
full batch size); a batch is a view at its start (``view``), so the pool's own tensor is never
handed out. A buffer is free again when its storage's use count is back to what it was when
the pool made it: no batch, view or numpy alias of it is alive. A caller that keeps a batch
keeps its buffer, and the pool writes elsewhere.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import torch

from .torch_internals import storage_uses


class BufferPool:
    """``count`` buffers of ``shape`` made now (``shared``: in shared memory, for worker
    processes to write into), up to ``keep`` in all as ``take`` needs them."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, count: int = 0,
                 shared: bool = False, keep: int = 0) -> None:
        self.shape, self.dtype, self.shared = shape, dtype, shared
        self.keep = max(keep, count)
        self.buffers: list[torch.Tensor] = []
        self._uses: list[Optional[int]] = []
        # pools whose buffer ``slot`` goes with this pool's (a batch's masks with its images):
        # a slot is free when it is free in every one
        self.companions: list["BufferPool"] = []
        for _ in range(count):
            self._add()

    def __len__(self) -> int:
        return len(self.buffers)

    def _add(self) -> int:
        buffer = torch.empty(self.shape, dtype=self.dtype)
        if self.shared:
            buffer.share_memory_()
        self.buffers.append(buffer)
        self._uses.append(storage_uses(buffer))
        return len(self.buffers) - 1

    def lent(self, slot: int) -> bool:
        """Does anything outside the pool still use this buffer (a batch, a view, an alias)?
        (True when this torch cannot say: never reuse blindly.)"""
        uses = self._uses[slot]
        return uses is None or storage_uses(self.buffers[slot]) != uses or any(
            other.lent(slot) for other in self.companions)

    def free_slot(self, exclude: Iterable[int] = ()) -> int:
        """A buffer nothing uses and not in ``exclude`` (in flight elsewhere); -1 if none."""
        busy = set(exclude)
        for slot in range(len(self.buffers)):
            if slot not in busy and not self.lent(slot):
                return slot
        return -1

    def view(self, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
        """A contiguous ``shape`` view at the start of buffer ``slot``."""
        return self.buffers[slot].view(-1)[:int(np.prod(shape))].view(shape)

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A ``shape`` view of a free buffer (a new one while fewer than ``keep`` exist; past
        that, a fresh tensor outside the pool)."""
        slot = self.free_slot()
        if slot < 0 and len(self.buffers) < self.keep:
            slot = self._add()
        if slot < 0:
            return torch.empty(shape, dtype=self.dtype)
        return self.view(slot, shape)
