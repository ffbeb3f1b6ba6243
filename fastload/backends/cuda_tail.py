"""The CUDA tail: host batch -> finished batch on a GPU, overlapped with the caller's step.

Copy on a side stream (timm's PrefetchLoader idea), uint8 -> the output dtype in one ``copy_``,
normalize in place, then random erasing through full-batch masks (no data-dependent sizes, so
no sync with the copy stream), then mixing. The rectangles and the noise's seed are the same
draws as the CPU finisher's (``finisher.noise_generator``).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch

from ..batch import Batch, HostBatch
from ..ops.spec import Pipeline
from .finisher import erase_values, needs_erasing, noise_generator, out_dtype
from .mix import batch_draw, mix_images


class CudaFinisher:
    """Finishes host batches on ``device`` (a CUDA device), in torch arithmetic."""

    def __init__(self, pipeline: Pipeline, device: torch.device,
                 normalized_input: bool = False) -> None:
        self.pipeline = pipeline.without_batch_functions()
        self.device = device
        self.normalized_input = normalized_input
        self.out_dtype = out_dtype(pipeline)
        if pipeline.normalize is not None:
            mean = torch.tensor(pipeline.normalize.mean, dtype=torch.float64)
            std = torch.tensor(pipeline.normalize.std, dtype=torch.float64)
            self._scale = (1.0 / (255.0 * std)).to(device, self.out_dtype).view(1, 3, 1, 1)
            self._bias = (-mean / std).to(device, self.out_dtype).view(1, 3, 1, 1)

    def __call__(self, host: HostBatch) -> torch.Tensor:
        images = host.images.to(self.device, non_blocking=True)
        if self.normalized_input or self.pipeline.normalize is None:
            out = images.to(self.out_dtype)
        else:
            out = torch.empty(images.shape, dtype=self.out_dtype, device=self.device)
            out.copy_(images)
            out.mul_(self._scale).add_(self._bias)
        if needs_erasing(self.pipeline, host):
            self._erase(out, host)
        mixing = self.pipeline.mixing
        if mixing is not None:
            mix_images(out, *batch_draw(mixing, host, *out.shape[2:]))
        return out

    def _erase(self, out: torch.Tensor, host: HostBatch) -> None:
        _, _, height, width = out.shape
        boxes = torch.from_numpy(host.erase).to(self.device).long()
        top, left, h, w = (boxes[:, k].view(-1, 1, 1) for k in range(4))
        rows = torch.arange(height, device=self.device).view(1, -1, 1)
        cols = torch.arange(width, device=self.device).view(1, 1, -1)
        mask = ((rows >= top) & (rows < top + h) & (cols >= left)
                & (cols < left + w)).unsqueeze(1)
        if self.pipeline.erasing.value == "random":
            noise = torch.randn(out.shape, generator=noise_generator(host, out.device),
                                device=out.device, dtype=out.dtype)
            out.copy_(torch.where(mask, noise, out))
        else:
            for channel, value in enumerate(erase_values(self.pipeline.erasing)):
                out[:, channel:channel + 1].masked_fill_(mask, value)


def prefetch_to_cuda(batches: Iterable[HostBatch], tail: Any) -> Iterator[Batch]:
    """Batch k+1's copy and finishing run on a side stream while the caller works on batch k;
    the caller's stream waits only for what it uses."""
    stream = torch.cuda.Stream(device=tail.device)
    pending = None
    for host in batches:
        with torch.cuda.stream(stream):
            ready = tail(host)
        if pending is not None:
            yield pending
        torch.cuda.current_stream(tail.device).wait_stream(stream)
        for tensor in ready[:2]:
            tensor.record_stream(torch.cuda.current_stream(tail.device))
        pending = ready
    if pending is not None:
        yield pending
