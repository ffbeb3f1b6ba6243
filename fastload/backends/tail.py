"""The device tail, shared by both backends: host uint8 batch -> normalized batch on the device.

Copy (on CUDA: on a side stream, overlapping the previous step), uint8 NHWC -> NCHW in one
fused ``addcmul`` that also normalizes, then random erasing over the whole batch at once: the
rectangles were drawn per sample from (seed, epoch, position); only ``value="random"`` noise
comes from here, from an explicit ``torch.Generator`` seeded by the batch's first position.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from ..batch import Batch, HostBatch
from ..spec import Pipeline

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class DeviceTail:
    """Turns HostBatch into Batch on ``device`` following the pipeline's Normalize/RandomErasing."""

    def __init__(self, pipeline: Pipeline, device: torch.device, seed: int) -> None:
        self.device = device
        self.seed = seed
        self.normalize = pipeline.normalize
        self.erasing = pipeline.erasing
        self.generator = torch.Generator(device=device)
        if self.normalize is not None:
            dtype = _DTYPES[self.normalize.dtype]
            mean = torch.tensor(self.normalize.mean, dtype=torch.float64)
            std = torch.tensor(self.normalize.std, dtype=torch.float64)
            self.dtype = dtype
            self.scale = (1.0 / (255.0 * std)).to(device, dtype).view(1, 3, 1, 1)
            self.bias = (-mean / std).to(device, dtype).view(1, 3, 1, 1)

    def __call__(self, host: HostBatch, epoch: int) -> Batch:
        images = host.images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        if self.normalize is None:
            out = images.contiguous()
        else:
            out = torch.empty(images.shape, dtype=self.dtype, device=self.device)
            torch.addcmul(self.bias, images, self.scale, out=out)
            if self.erasing is not None and bool(host.erase[:, 2].any()):
                self._erase(out, host, epoch)
        labels = host.labels.to(self.device, non_blocking=True)
        return Batch(out, labels, host.indices, host.padded)

    def _erase(self, out: torch.Tensor, host: HostBatch, epoch: int) -> None:
        boxes = host.erase.to(self.device, non_blocking=True).long()
        _, _, height, width = out.shape
        top, left, h, w = (boxes[:, k].view(-1, 1, 1) for k in range(4))
        rows = torch.arange(height, device=self.device).view(1, -1, 1)
        cols = torch.arange(width, device=self.device).view(1, 1, -1)
        mask = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        value = self.erasing.value
        if value == "random":
            self.generator.manual_seed(_batch_seed(self.seed, epoch, int(host.positions[0])))
            count = int((host.erase[:, 2].long() * host.erase[:, 3].long()).sum()) * 3
            noise = torch.randn(count, generator=self.generator, device=self.device, dtype=out.dtype)
            out.masked_scatter_(mask.unsqueeze(1).expand_as(out), noise)
        else:
            values = (value,) * 3 if isinstance(value, float) else value
            for c in range(3):
                out[:, c].masked_fill_(mask, values[c])


def _batch_seed(seed: int, epoch: int, first_position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, first_position, 0xE2A5E]).generate_state(1)[0])


def prefetch_to_cuda(batches: Iterable[HostBatch], tail: DeviceTail, epoch: int) -> Iterator[Batch]:
    """timm's PrefetchLoader idea: batch k+1's copy and normalize run on a side stream while the
    caller works on batch k; the caller's stream waits only for what it uses."""
    stream = torch.cuda.Stream(device=tail.device)
    pending = None
    for host in batches:
        with torch.cuda.stream(stream):
            ready = tail(host, epoch)
        if pending is not None:
            yield pending
        torch.cuda.current_stream(tail.device).wait_stream(stream)
        for tensor in ready[:2]:
            tensor.record_stream(torch.cuda.current_stream(tail.device))
        pending = ready
    if pending is not None:
        yield pending


def apply_tail(batches: Iterable[HostBatch], tail: DeviceTail, epoch: int) -> Iterator[Batch]:
    """The tail over a stream of host batches, overlapped with the caller's work on CUDA."""
    if tail.device.type == "cuda":
        return prefetch_to_cuda(batches, tail, epoch)
    return (tail(host, epoch) for host in batches)
