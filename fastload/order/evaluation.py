"""Exact evaluation across ranks: every sample counted once, padded repeats left out."""

from __future__ import annotations

from typing import Any, Optional


class ExactMean:
    """The mean of a per-sample value (correct or not, a loss) over a whole epoch of a loader,
    each sample counted exactly once, also across DDP ranks::

        accuracy = fl.ExactMean()
        for batch in val_loader:
            images, labels = batch
            accuracy.update(model(images).argmax(1) == labels, batch)
        top1 = accuracy.compute()  # the same on every rank

    ``update`` leaves out the samples marked in ``batch.padded`` (the repeats that give every
    rank the same batch count); ``compute`` sums over the ranks of ``torch.distributed`` when
    it is initialized (or of ``group``).
    """

    def __init__(self) -> None:
        self.total: Any = None  # float64 tensor on the values' device
        self.count: Any = None

    def update(self, values: Any, batch: Any) -> None:
        """Add a batch's per-sample ``values`` (shape (B,)); ``batch`` is the loader's Batch
        (or its ``padded`` mask)."""
        import torch

        padded = getattr(batch, "padded", batch)
        values = torch.as_tensor(values)
        keep = ~torch.as_tensor(padded, dtype=torch.bool).to(values.device)
        if values.shape[:1] != keep.shape:
            from ..errors import SpecError

            raise SpecError(f"ExactMean.update: values of shape {tuple(values.shape)} do not match "
                            f"a batch of {keep.shape[0]} samples; give one value per sample")
        total = values[keep].to(torch.float64).sum()
        count = keep.sum().to(torch.float64)
        if self.total is None:
            self.total, self.count = total, count
        else:
            self.total, self.count = self.total + total, self.count + count

    def compute(self, group: Optional[Any] = None) -> float:
        """The mean over every sample seen by every rank (all-reduced when distributed)."""
        import torch
        import torch.distributed as td

        if self.total is None:
            total = torch.zeros(2, dtype=torch.float64)
        else:
            total = torch.stack([self.total, self.count])
        if td.is_available() and td.is_initialized():
            if td.get_backend(group) == "nccl" and total.device.type != "cuda":
                total = total.cuda()
            td.all_reduce(total, group=group)
        value, count = total.tolist()
        return value / count if count else float("nan")

    def reset(self) -> None:
        self.total = self.count = None
