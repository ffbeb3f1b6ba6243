"""The tail, shared by both backends: host batch -> the caller's Batch on the target device.

``Tail`` pairs a finisher (``finisher.CpuFinisher`` on a CPU, ``cuda_tail.CudaFinisher`` on
CUDA: dtype, normalize, erasing, mixing) with what only the training process does: labels to
the device (soft targets after a mixing op) and the pipeline's BatchLambdas. ``apply_tail``
runs it over a stream of host batches, overlapped with the caller's step: on a side CUDA
stream, or on a CPU in a thread that blocks on a bounded queue.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import numpy as np

import torch

from ..batch import Batch, HostBatch
from ..errors import LoaderTimeout, SpecError, TransformError
from ..ops.spec import Pipeline
from .cuda_tail import CudaFinisher, prefetch_to_cuda
from .finisher import CpuFinisher
from .mix import batch_draw, soft_labels


class Tail:
    """Turns HostBatch into Batch on ``device`` following the pipeline's Normalize,
    RandomErasing, mixing op and BatchLambdas."""

    def __init__(self, pipeline: Pipeline, device: torch.device,
                 normalized_input: bool = False) -> None:
        """``normalized_input``: batches arrive already normalized, channels first (DALI's
        crop_mirror_normalize did it)."""
        self.device = device
        self.mixing = pipeline.mixing
        self.batch_fns = pipeline.batch_fns  # run in this process only (never pickled)
        self.finisher: Union[CpuFinisher, CudaFinisher] = (
            CpuFinisher(pipeline, normalized_input) if device.type == "cpu"
            else CudaFinisher(pipeline, device, normalized_input))

    @property
    def out_dtype(self) -> torch.dtype:
        return self.finisher.out_dtype

    def __call__(self, host: HostBatch) -> Batch:
        return self.batch(self.finisher(host), host)

    def batch(self, out: torch.Tensor, host: HostBatch) -> Batch:
        """The caller's Batch: the finished images ``out`` (on the device) and the host batch's
        labels (to the device; soft targets after a mixing op), indices, padding and skipped
        samples; then the pipeline's BatchLambdas, in order."""
        labels = torch.from_numpy(host.labels).to(self.device, non_blocking=True)
        targets = self.targets(host.targets)
        if self.mixing is not None:
            if targets and ("masks" in targets or "boxes" in targets):
                raise SpecError(f"{type(self.mixing).__name__}: mixes images and their labels, "
                                "not masks or boxes; leave the mixing op out for a segmentation "
                                "or detection source")
            draw, perm = batch_draw(self.mixing, host, *out.shape[2:])
            labels = soft_labels(labels, self.mixing, draw, perm)
        for op in self.batch_fns:
            out, labels = _run_batch_fn(op, out, labels, host)
        return Batch(out, labels, torch.from_numpy(host.indices), torch.from_numpy(host.padded),
                     host.skipped, targets)

    def targets(self, host: Any) -> Optional[dict]:
        """A HostTargets on the device: masks int64, boxes, their labels and counts; fields
        as tensors on the host (strings as lists), as DataLoader's collate leaves them."""
        if host is None:
            return None
        out: dict[str, Any] = {}
        if host.masks is not None:
            out["masks"] = host.masks.to(self.device, non_blocking=True).long()
        if host.boxes is not None:
            for name in ("boxes", "box_labels", "box_counts"):
                out[name] = torch.from_numpy(getattr(host, name)).to(self.device,
                                                                     non_blocking=True)
        if host.fields:
            out["fields"] = {name: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                             for name, v in host.fields.items()}
        return out


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


def prefetch_in_thread(batches: Iterable[HostBatch], tail: Tail, depth: int = 2,
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


def apply_tail(batches: Iterable[HostBatch], tail: Tail, timeout: float = 0.0,
               describe: Callable[[], str] = lambda: "") -> Iterator[Batch]:
    """The tail over a stream of host batches, overlapped with the caller's work. ``timeout``
    bounds each batch's wait on a CPU target (the stream runs in a thread there)."""
    if tail.device.type == "cuda":
        return prefetch_to_cuda(batches, tail)
    return prefetch_in_thread(batches, tail, timeout=timeout, describe=describe)
