"""The device tail, shared by both backends: host uint8 batch -> normalized batch on the device.

Copy (on CUDA: on a side stream, overlapping the previous step), uint8 -> float NCHW in one
``copy_``, normalize in place, then random erasing over the whole batch at once: the
rectangles were drawn per sample from (seed, epoch, position) and are written through one
index of all erased pixels; only ``value="random"`` noise comes from here, from an explicit
``torch.Generator`` seeded by (seed, epoch, the batch's first position).

On a CPU target the output batches are views of recycled buffers (``buffers.BufferPool``, given
by the backend): fresh memory per batch costs more in page faults than normalizing it. The
CPU arithmetic runs single-threaded: torch's intra-op threads spin while the decode workers
need every core, and the caller's thread settings are theirs to keep. For float32 output,
normalize and constant erasing run in one pass of the C extension ``fastload._kernels``; numpy
does the same arithmetic, bit for bit, where the extension is not built (bfloat16: torch).
Erasing is indexed on a CPU (only the erased pixels) and masked on CUDA (no data-dependent
sizes, so no sync with the copy stream). Figures: benchmarks/README.md.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ..batch import Batch, HostBatch
from ..errors import LoaderTimeout, TransformError
from ..spec import Pipeline
from .mix import batch_draw, mix_images, soft_labels

try:
    from .._kernels import normalize_erase
except ImportError:  # pragma: no cover - the C extension is optional (numpy does the same)
    normalize_erase = None

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class DeviceTail:
    """Turns HostBatch into Batch on ``device`` following the pipeline's Normalize/RandomErasing."""

    def __init__(self, pipeline: Pipeline, device: torch.device,
                 normalized_input: bool = False) -> None:
        """``normalized_input``: batches arrive already normalized, channels first (DALI's
        crop_mirror_normalize did it); only the dtype and erasing remain. On a CPU target the
        caller gives the output buffers (``__call__``'s ``out``: a ``BufferPool`` view)."""
        self.device = device
        self.normalized_input = normalized_input
        self.normalize = pipeline.normalize
        self.erasing = pipeline.erasing
        self.mixing = pipeline.mixing
        self.batch_fns = pipeline.batch_fns  # run in this process only (never pickled)
        if self.normalize is not None:
            dtype = _DTYPES[self.normalize.dtype]
            mean = torch.tensor(self.normalize.mean, dtype=torch.float64)
            std = torch.tensor(self.normalize.std, dtype=torch.float64)
            self.dtype = dtype
            self.scale = (1.0 / (255.0 * std)).to(device, dtype).view(1, 3, 1, 1)
            self.bias = (-mean / std).to(device, dtype).view(1, 3, 1, 1)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["batch_fns"] = ()  # workers finish batches; batch functions run in the loop
        return state

    @property
    def out_dtype(self) -> torch.dtype:
        return torch.uint8 if self.normalize is None else self.dtype

    def __call__(self, host: HostBatch) -> Batch:
        if self.normalized_input:
            out = host.images.to(self.device, self.out_dtype, non_blocking=True)
            self._erase(out, host)
            self._mix(out, host)
        else:
            images = host.images.to(self.device, non_blocking=True)
            out = torch.empty(images.shape, dtype=self.out_dtype, device=self.device)
            self.finish(images, out, host)
        return self.batch(out, host)

    def batch(self, out: torch.Tensor, host: HostBatch) -> Batch:
        """The caller's Batch: the finished images ``out`` (on the device) and the host batch's
        labels (to the device; soft targets after a mixing op), indices, padding and skipped
        samples; then the pipeline's BatchLambdas, in order."""
        labels = torch.from_numpy(host.labels).to(self.device, non_blocking=True)
        if self.mixing is not None:
            draw, perm = batch_draw(self.mixing, host, *out.shape[2:])
            labels = soft_labels(labels, self.mixing, draw, perm)
        for op in self.batch_fns:
            out, labels = _run_batch_fn(op, out, labels, host)
        return Batch(out, labels, torch.from_numpy(host.indices), torch.from_numpy(host.padded),
                     host.skipped)

    def finish(self, images: torch.Tensor, out: torch.Tensor, host: HostBatch) -> None:
        """Write the finished batch (dtype, normalize, erasing, mixing) of uint8 ``images`` into
        ``out`` (same device). The torch backend's CPU workers call this into their shared
        buffers."""
        if self._fused(images, out, host):
            if self.erasing is not None and self.erasing.value == "random":
                self._erase(out, host)
        else:
            if _numpy_ok(out):
                self._normalize_numpy(images.numpy(), out.numpy())
            else:
                out.copy_(images)
                if self.normalize is not None:
                    out.mul_(self.scale).add_(self.bias)
            self._erase(out, host)
        self._mix(out, host)

    def _mix(self, out: torch.Tensor, host: HostBatch) -> None:
        if self.mixing is not None:
            mix_images(out, *batch_draw(self.mixing, host, *out.shape[2:]))

    def _erase(self, out: torch.Tensor, host: HostBatch) -> None:
        if self.normalize is None or self.erasing is None or not bool(host.erase[:, 2].any()):
            return
        # a fresh generator per batch: the noise depends on (seed, epoch, position) only,
        # and the tail stays picklable for spawned workers (torch.Generator is not)
        generator = torch.Generator(device=out.device)
        generator.manual_seed(_batch_seed(host.seed, host.epoch, int(host.positions[0])))
        if _numpy_ok(out):
            self._erase_indexed(out, host, generator)
        else:
            self._erase_masked(out, host, generator)

    def _fused(self, images: torch.Tensor, out: torch.Tensor, host: HostBatch) -> bool:
        """CPU float32: normalize and constant erasing in one pass of fastload._kernels, when it
        was built; False (nothing done) otherwise."""
        if (normalize_erase is None or self.normalize is None or out.dtype != torch.float32
                or out.device.type != "cpu" or not images.is_contiguous()):
            return False
        scale, bias = self._numpy_constants(np.float32)
        boxes = fill = None
        if self.erasing is not None:
            boxes = np.ascontiguousarray(host.erase, dtype=np.int32)
            if self.erasing.value != "random":
                fill = np.asarray(self._values(), dtype=np.float32)
        batch, _, height, width = images.shape
        normalize_erase(images.numpy(), out.numpy(), batch, height, width, scale, bias, boxes,
                        fill)
        return True

    def _numpy_constants(self, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "_np_scale") or self._np_scale.dtype != dtype:
            self._np_scale = self.scale.cpu().numpy().astype(dtype)
            self._np_bias = self.bias.cpu().numpy().astype(dtype)
        return self._np_scale, self._np_bias

    def _normalize_numpy(self, images: np.ndarray, out: np.ndarray) -> None:
        if self.normalize is None:
            np.copyto(out, images)
            return
        scale, bias = self._numpy_constants(out.dtype)
        np.multiply(images, scale, out=out)
        np.add(out, bias, out=out)

    def _erase_indexed(self, out: torch.Tensor, host: HostBatch, generator: torch.Generator) -> None:
        """CPU: write the value into exactly the erased pixels, through one batch-wide index."""
        erase = host.erase
        chosen = np.flatnonzero(erase[:, 2] > 0)
        top, left, h, w = (erase[chosen, k].reshape(-1, 1, 1) for k in range(4))
        rows = np.arange(out.shape[2]).reshape(1, -1, 1)
        cols = np.arange(out.shape[3]).reshape(1, 1, -1)
        which, r, c = np.nonzero((rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w))
        b, pixels = chosen[which], out.numpy()
        if self.erasing.value == "random":
            noise = torch.randn((len(b), 3), generator=generator, dtype=out.dtype)
            pixels[b, :, r, c] = noise.numpy()
        else:
            for channel, value in enumerate(self._values()):
                pixels[b, channel, r, c] = value

    def _erase_masked(self, out: torch.Tensor, host: HostBatch, generator: torch.Generator) -> None:
        """CUDA: full-batch masks, no data-dependent sizes, so no sync with the copy stream."""
        _, _, height, width = out.shape
        mask = _inside(torch.from_numpy(host.erase).to(self.device).long(), height, width,
                       out.device).unsqueeze(1)
        if self.erasing.value == "random":
            noise = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
            out.copy_(torch.where(mask, noise, out))
        else:
            for channel, value in enumerate(self._values()):
                out[:, channel:channel + 1].masked_fill_(mask, value)

    def _values(self) -> tuple[float, float, float]:
        value = self.erasing.value
        return (value,) * 3 if isinstance(value, float) else value


def _run_batch_fn(op: Any, images: torch.Tensor, labels: torch.Tensor,
                  host: HostBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """One BatchLambda; its failures name the op and the batch's samples."""
    where = f"the batch of epoch {host.epoch} holding samples {host.indices[:8].tolist()}" + \
        (" ..." if len(host.indices) > 8 else "")
    try:
        result = op.fn(images, labels)
    except Exception as exc:  # noqa: BLE001 - the user's function: any error, named
        raise TransformError(f"{op.name}: raised {type(exc).__name__}: {exc} (on {where})") from exc
    if not (isinstance(result, tuple) and len(result) == 2 and all(
            isinstance(t, torch.Tensor) for t in result)):
        raise TransformError(f"{op.name}: must return (images, labels) tensors; returned "
                             f"{type(result).__name__} (on {where})")
    return result


def _numpy_ok(tensor: torch.Tensor) -> bool:
    """CPU tensors numpy can hold (not bfloat16) take the single-threaded numpy path."""
    return tensor.device.type == "cpu" and tensor.dtype != torch.bfloat16


def _inside(boxes: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(B, H, W) bool: pixel inside its image's (top, left, height, width) box."""
    top, left, h, w = (boxes[:, k].view(-1, 1, 1) for k in range(4))
    rows = torch.arange(height, device=device).view(1, -1, 1)
    cols = torch.arange(width, device=device).view(1, 1, -1)
    return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def _batch_seed(seed: int, epoch: int, first_position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, first_position, 0xE2A5E]).generate_state(1)[0])


def prefetch_to_cuda(batches: Iterable[HostBatch], tail: DeviceTail) -> Iterator[Batch]:
    """timm's PrefetchLoader idea: batch k+1's copy and normalize run on a side stream while the
    caller works on batch k; the caller's stream waits only for what it uses."""
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


def prefetch_in_thread(batches: Iterable[HostBatch], tail: DeviceTail, depth: int = 2,
                       timeout: float = 0.0,
                       describe: Callable[[], str] = lambda: "") -> Iterator[Batch]:
    """CPU: a thread takes host batches and runs the tail up to ``depth`` batches ahead, so the
    caller's ``next()`` returns a ready batch while its step runs (torch ops release the GIL).
    Errors reach the caller unchanged; leaving early stops and joins the thread. ``timeout``
    (seconds, 0 = none): a batch later than that raises LoaderTimeout (naming ``describe()``)
    and leaves the stuck thread behind."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    source = iter(batches)

    def work() -> None:
        try:
            for host in source:
                ready.put(tail(host))  # blocks while the caller is depth batches behind
                if stop.is_set():
                    return
            ready.put(_END)
        except BaseException as exc:  # handed to the caller, re-raised there
            if not stop.is_set():
                ready.put(_Failure(exc))
        finally:
            close = getattr(source, "close", None)  # a generator's cleanup runs here, now
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="fastload-tail", daemon=True)
    thread.start()
    stuck = False
    try:
        while True:
            try:
                item = ready.get(timeout=timeout or None)
            except queue.Empty:
                stuck = True
                raise LoaderTimeout(
                    f"no batch within timeout={timeout:g} s{describe()}: a read may hang (a "
                    "stuck network filesystem?). This loader cannot go on; make a new one, "
                    "and raise timeout= if such a batch is merely slow (0 waits forever)."
                ) from None
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        if not stuck:  # unblock a put the caller will never take, until the thread is done
            while thread.is_alive():
                try:
                    ready.get(timeout=0.1)
                except queue.Empty:
                    pass
            thread.join()


_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def apply_tail(batches: Iterable[HostBatch], tail: DeviceTail, timeout: float = 0.0,
               describe: Callable[[], str] = lambda: "") -> Iterator[Batch]:
    """The tail over a stream of host batches, overlapped with the caller's work. ``timeout``
    bounds each batch's wait on a CPU target (the stream runs in a thread there)."""
    if tail.device.type == "cuda":
        return prefetch_to_cuda(batches, tail)
    return prefetch_in_thread(batches, tail, timeout=timeout, describe=describe)
