"""The CPU finisher: a host batch's pixels -> the finished batch (dtype, normalize, erasing,
mixing), in place in a buffer the caller gives.

One arithmetic path: the C extension ``fastload._kernels`` normalizes and writes constant
erasing in one pass for float32; numpy does the same arithmetic, bit for bit, where the
extension is not built (and for float16). bfloat16, which numpy cannot hold, is finished in
float32 and rounded once at the end. Erasing writes exactly the erased pixels, through one
batch-wide index; ``value="random"`` noise comes from an explicit ``torch.Generator`` seeded
by (seed, epoch, the batch's first position). Everything runs single-threaded: torch's
intra-op threads spin while the decode workers need every core, and the caller's thread
settings are theirs to keep. The torch backend's workers run this into shared buffers; the
DALI backend's CPU mode runs it on DALI's normalized output. Figures: benchmarks/README.md.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..batch import HostBatch
from ..ops.spec import Pipeline
from .mix import batch_draw, mix_images

try:
    from .._kernels import normalize_erase
except ImportError:  # pragma: no cover - the C extension is optional (numpy does the same)
    normalize_erase = None

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def out_dtype(pipeline: Pipeline) -> torch.dtype:
    """The finished batch's dtype: uint8 without Normalize, else Normalize's dtype."""
    return torch.uint8 if pipeline.normalize is None else DTYPES[pipeline.normalize.dtype]


def noise_generator(host: HostBatch, device: torch.device) -> torch.Generator:
    """The generator of a batch's random-erasing noise: a function of (seed, epoch, first
    position) only, made per batch (a torch.Generator does not pickle)."""
    seed = np.random.SeedSequence([host.seed, host.epoch, int(host.positions[0]), 0xE2A5E])
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed.generate_state(1)[0]))
    return generator


def erase_values(erasing: Any) -> tuple[float, float, float]:
    """RandomErasing's constant fill, one value per channel."""
    value = erasing.value
    return (value,) * 3 if isinstance(value, float) else value


def needs_erasing(pipeline: Pipeline, host: HostBatch) -> bool:
    return (pipeline.normalize is not None and pipeline.erasing is not None
            and bool(host.erase[:, 2].any()))


class CpuFinisher:
    """Finishes host batches on the CPU. Picklable (workers hold one); holds no batch functions."""

    def __init__(self, pipeline: Pipeline, normalized_input: bool = False) -> None:
        """``normalized_input``: batches arrive already normalized, channels first (DALI's
        crop_mirror_normalize did it); only the dtype, erasing and mixing remain."""
        self.pipeline = pipeline.without_batch_functions()
        self.normalized_input = normalized_input
        self.out_dtype = out_dtype(pipeline)
        if pipeline.normalize is not None:
            mean = np.asarray(pipeline.normalize.mean, dtype=np.float64)
            std = np.asarray(pipeline.normalize.std, dtype=np.float64)
            self._scale = (1.0 / (255.0 * std)).reshape(1, 3, 1, 1)
            self._bias = (-mean / std).reshape(1, 3, 1, 1)

    def __call__(self, host: HostBatch) -> torch.Tensor:
        """The finished batch: in place when the input already has the output's dtype (DALI's
        normalized float32), else a new tensor."""
        images = host.images
        same = self.normalized_input and images.dtype == self.out_dtype
        out = images if same else torch.empty(images.shape, dtype=self.out_dtype)
        self.finish(images, out, host)
        return out

    def finish(self, images: torch.Tensor, out: torch.Tensor, host: HostBatch) -> None:
        """Write the finished batch of ``images`` into ``out`` (same shape, CPU)."""
        bfloat = out.dtype == torch.bfloat16
        work = torch.empty(out.shape, dtype=torch.float32) if bfloat else out
        fused = False
        if self.normalized_input or self.pipeline.normalize is None:
            if work is not images:
                work.copy_(images)
        else:
            fused = self._fused(images, work, host)
            if not fused:
                self._normalize(images.numpy(), work.numpy())
        if needs_erasing(self.pipeline, host) and not (
                fused and self.pipeline.erasing.value != "random"):
            self._erase(work, host)
        mixing = self.pipeline.mixing
        if mixing is not None:
            mix_images(work, *batch_draw(mixing, host, *work.shape[2:]))
        if bfloat:
            out.copy_(work)

    def _fused(self, images: torch.Tensor, out: torch.Tensor, host: HostBatch) -> bool:
        """float32: normalize and constant erasing in one pass of fastload._kernels, when it
        was built; False (nothing done) otherwise."""
        if normalize_erase is None or out.dtype != torch.float32 or not images.is_contiguous():
            return False
        scale, bias = self._constants(np.float32)
        boxes: Optional[np.ndarray] = None
        fill: Optional[np.ndarray] = None
        erasing = self.pipeline.erasing
        if erasing is not None:
            boxes = np.ascontiguousarray(host.erase, dtype=np.int32)
            if erasing.value != "random":
                fill = np.asarray(erase_values(erasing), dtype=np.float32)
        batch, _, height, width = images.shape
        normalize_erase(images.numpy(), out.numpy(), batch, height, width, scale, bias, boxes,
                        fill)
        return True

    def _constants(self, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._scale.astype(dtype), self._bias.astype(dtype)

    def _normalize(self, images: np.ndarray, out: np.ndarray) -> None:
        scale, bias = self._constants(out.dtype)
        np.multiply(images, scale, out=out)
        np.add(out, bias, out=out)

    def _erase(self, out: torch.Tensor, host: HostBatch) -> None:
        """Write the value into exactly the erased pixels, through one batch-wide index."""
        erase = host.erase
        chosen = np.flatnonzero(erase[:, 2] > 0)
        top, left, h, w = (erase[chosen, k].reshape(-1, 1, 1) for k in range(4))
        rows = np.arange(out.shape[2]).reshape(1, -1, 1)
        cols = np.arange(out.shape[3]).reshape(1, 1, -1)
        which, r, c = np.nonzero((rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w))
        b, pixels = chosen[which], out.numpy()
        if self.pipeline.erasing.value == "random":
            generator = noise_generator(host, out.device)
            noise = torch.randn((len(b), 3), generator=generator, dtype=out.dtype)
            pixels[b, :, r, c] = noise.numpy()
        else:
            for channel, value in enumerate(erase_values(self.pipeline.erasing)):
                pixels[b, channel, r, c] = value
