"""The torch backend: a normal Dataset + persistent-worker DataLoader.

Workers receive one ``BatchTask`` per batch (sample indices and their global positions), read
and decode each sample, crop/resize/flip it into a uint8 (B, 3, H, W) batch, and draw each
sample's random parameters from (seed, epoch, position) alone. So results are identical
whatever ``num_workers`` is, and the main process receives one shared buffer per batch (no
collate copy). For a CPU target the workers also finish the batch (normalize, erasing) into a
pool of shared buffers; for a GPU, uint8 goes to the device tail (on a CUDA side stream).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from ... import errors
from ...batch import Batch, BatchTask, HostBatch, describe_samples
from ...errors import FastloadError, LoaderTimeout
from ...image_info import read_header
from ...ops.draws import SampleRngs
from ...ops.geometry import SamplePlan, is_random, plan_sample
from ...ops.spec import Pipeline
from ...options import LoaderOptions, OnError
from ...per_process import forking
from ...sources.base import Source
from ..buffers import BufferPool
from ..finisher import CpuFinisher
from ..skips import prefetch, read_sample
from ...target_info import split_read
from ..targets import TargetBatch, TargetOptions
from ..tail import Tail, apply_tail
from ..torch_internals import (awaited_worker, is_timeout, new_shared_storage, shutdown_workers,
                               warn_workers_once, worker_failure)
from .imaging import render
from .main_guard import check_main_guard
from .pixel import apply_steps
from .task_queue import (LIVENESS_POLL_S, Deadline, WorkerInit, TaskQueue,
                         no_wakeup_preemption)


class BatchDataset(Dataset):
    """Map-style dataset whose ``__getitems__`` renders one whole BatchTask.

    With ``finish`` (CPU targets) the worker also runs the tail (normalize, erasing) and writes
    the finished batch into ``pool[task.slot]``, a shared buffer of the producer's pool (a
    fresh shared tensor when the task has no slot); the main process only wraps it.
    """

    def __init__(self, source: Source, pipeline: Pipeline, on_error: OnError = OnError(),
                 finish: Optional[CpuFinisher] = None, pool: Optional[BufferPool] = None,
                 progress: Optional[torch.Tensor] = None,
                 targets: TargetOptions = TargetOptions(),
                 masks: Optional[BufferPool] = None) -> None:
        self.source = source
        self.targets = targets
        self.masks = masks  # int64 mask buffers, the images' slots (CPU targets with masks)
        self.pipeline = pipeline
        self.random = is_random(pipeline)
        self.on_error = on_error
        self.finish = finish
        self.pool = pool  # shared buffers of the finished dtype (CPU targets)
        # shared, one per worker: the sample each worker is reading now (-1: none), for the
        # watchdog's message
        self.progress = progress
        self._scratch: Optional[torch.Tensor] = None  # this process's uint8 batch (flat), reused

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Any:
        raise TypeError("BatchDataset renders whole batches; use __getitems__([task])")

    def __getitems__(self, tasks: list[BatchTask]) -> Any:
        """The rendered batch, or a ``Failed`` carrying a fastload error: sent back as data,
        so the training loop raises it with its own message (a worker's exception would
        arrive wrapped in the worker's traceback)."""
        (task,) = tasks
        try:
            return self._render(task)
        except FastloadError as exc:
            return Failed(type(exc).__name__, str(exc), task.slot)

    def _render(self, task: BatchTask) -> HostBatch:
        info = get_worker_info()
        if self.progress is None or info is None:
            return self._render_marked(task, None)
        slot = self.progress.numpy()[info.id:info.id + 1]

        def mark(index: int) -> None:
            slot[0] = index

        try:
            return self._render_marked(task, mark)
        finally:
            slot[0] = -1

    def _render_marked(self, task: BatchTask, mark: Optional[Callable[[int], None]]
                       ) -> HostBatch:
        pipeline = self.pipeline.at_epoch(task.epoch)  # the epoch's size (progressive resizing)
        if self.finish is None:
            return render_batch(self.source, pipeline, task, self.random, self.on_error,
                                mark=mark, targets=self.targets)
        count = len(task.indices)
        shape = (count, 3, *pipeline.output_size)
        out = (self.pool.view(task.slot, shape) if task.slot >= 0
               else empty_shared(shape, self.finish.out_dtype))
        masks = self.masks if task.slot >= 0 else None
        if out.dtype == torch.uint8:  # nothing to finish: render straight into the output
            host = render_batch(self.source, pipeline, task, self.random, self.on_error, out,
                                mark=mark, targets=self.targets, masks=masks)
        else:
            if self._scratch is None or self._scratch.numel() < out.numel():
                self._scratch = torch.empty(out.numel(), dtype=torch.uint8)
            host = render_batch(self.source, pipeline, task, self.random, self.on_error,
                                self._scratch[:out.numel()].view(shape), mark=mark,
                                targets=self.targets, masks=masks)
            self.finish.finish(host.images, out, host)
        return host._replace(images=None if task.slot >= 0 else out, slot=task.slot)


class Failed(NamedTuple):
    """A batch that could not be made: the fastload error's class name and message."""

    kind: str
    message: str
    slot: int = -1

    def error(self) -> FastloadError:
        cls = getattr(errors, self.kind, FastloadError)
        return cls(self.message)


def render_batch(source: Source, pipeline: Pipeline, task: BatchTask, random: bool,
                 on_error: OnError = OnError(), out: Optional[torch.Tensor] = None,
                 mark: Optional[Callable[[int], None]] = None,
                 targets: TargetOptions = TargetOptions(),
                 masks: Optional[BufferPool] = None) -> HostBatch:
    """Read, decode and transform every sample of ``task`` into one uint8 NCHW tensor (and
    its targets: ``targets.TargetBatch``).

    ``on_error="skip"``: a sample that cannot be read or decoded is replaced by the next one
    (index + 1, + 2, ... in the source) that can, with the same random draws (they belong to the
    position), and reported in ``HostBatch.skipped``. ``out``: where to write the images
    (default: a new tensor, in shared memory in a worker). ``masks``: the producer's int64
    mask pool, written at ``task.slot`` (else masks go in a new uint8 tensor).
    """
    count = len(task.indices)
    height, width = pipeline.output_size
    images = empty_shared((count, 3, height, width), torch.uint8) if out is None else out
    collected = TargetBatch(
        count, pipeline, targets,
        (lambda shape: masks.view(task.slot, shape)) if masks is not None else
        (lambda shape: empty_shared(shape, torch.uint8)), pooled=masks is not None)
    erase = np.zeros((count, 4), dtype=np.int32)
    indices = task.indices.copy()
    skipped = []
    prefetch(source, task.indices, task.ahead)
    rngs = SampleRngs(task.seed, task.epoch, task.positions) if random else None
    for k in range(count):
        position = int(task.positions[k])

        def work(index: int) -> SamplePlan:  # header -> plan -> pixels, as the DALI feeder
            if mark is not None:
                mark(index)
            where = source.locate(index)
            data, label, extras = split_read(source.read(index), where)
            width, height = read_header(data, where)
            rng = rngs.get(k) if rngs is not None else None  # afresh for each try
            plan = plan_sample(pipeline, height, width, rng)
            render(data, where, plan, (height, width), images[k])
            collected.add(k, label, extras, plan, (height, width), where)
            return plan

        index, plan, missed = read_sample(source, int(task.indices[k]), on_error, work)
        skipped.extend(missed)
        indices[k] = index
        erase[k] = plan.erase
        if plan.steps:
            apply_steps(pipeline.pixel, plan.steps, images[k], task.seed, task.epoch, position,
                        source.locate(index))
    return HostBatch(images, collected.labels, indices, task.positions, task.padded, erase,
                     task.seed, task.epoch, tuple(skipped),
                     targets=collected.finish(lambda: describe_samples(source, indices)))


def empty_shared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """In a worker, allocate straight in shared memory so sending the batch copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
    storage = new_shared_storage(nbytes)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def same_task(a: BatchTask, b: BatchTask) -> bool:
    return (a.seed, a.epoch) == (b.seed, b.epoch) and np.array_equal(a.positions, b.positions)


def _only(batch: HostBatch) -> HostBatch:
    return batch


class TorchProducer:
    """Runs BatchTasks through a persistent-worker DataLoader, in order, into final Batches.

    One stream (DataLoader iterator, and on CUDA the device tail) runs across epochs: when an
    epoch's tasks are queued, the next epoch's (the Loader's ``following``) are queued behind
    them, so the workers go straight on into the next epoch. The next ``batches`` call
    continues the stream when it asks for exactly what is queued (the next epoch after a full
    one); anything else (a new iteration of the same epoch, ``set_epoch`` to another epoch,
    ``load_state_dict``) drops the speculative work and restarts the stream at the requested
    batch.

    CPU target: the workers finish each batch (normalize, erasing) into a fixed pool of shared
    buffers, so the caller's ``next()`` only unpickles a few small arrays. A buffer returns to
    the pool once the caller has let go of the batch (no tensor, view or numpy alias of it
    left); held batches are never overwritten, the worker then writes into a fresh buffer.
    CUDA target: workers send uint8 (4x less to copy), the tail runs on the GPU on a side
    stream.

    Watchdog: a batch not delivered within ``options.timeout`` seconds raises LoaderTimeout
    naming the worker, the samples and their files; the workers are then stopped (the stuck
    one killed) and the next iteration starts fresh ones. A worker that dies is handled the
    same way.
    """

    resumable = True

    def __init__(self, source: Source, pipeline: Pipeline, options: LoaderOptions, *,
                 device: torch.device) -> None:
        self._source = source
        self._tail = Tail(pipeline, device)
        on_cpu = device.type == "cpu"
        workers = options.num_workers > 0
        # every batch in flight, the one the caller holds and the one before it (a for loop's
        # variables still hold it while next() runs), one spare
        slots = options.prefetch_factor * max(1, options.num_workers) + 3 if on_cpu else 0
        self._pipeline = pipeline
        height, width = pipeline.largest_output_size()
        self._pool = BufferPool((options.batch_size, 3, height, width), self._tail.out_dtype,
                                count=slots, shared=True)
        targets = TargetOptions.of(source, options.ignore_index, options.min_box_size)
        self._masks: Optional[BufferPool] = None
        if on_cpu and targets.masks:  # int64 masks written in place, as the images
            self._masks = BufferPool((options.batch_size, height, width), torch.int64,
                                     count=slots, shared=True)
            self._pool.companions.append(self._masks)
        lookahead = max(1, options.num_workers) if hasattr(source, "prefetch") else 0
        self._sampler = TaskQueue(self._pool, lookahead)
        self._stream: Optional[Iterator[Batch]] = None
        self._hosts: Any = None  # the DataLoader iterator behind the stream
        self._timeout = options.timeout if workers else 0.0
        # DataLoader checks its workers' liveness only when a wait times out: poll at its own
        # interval, and let Deadline raise once the whole timeout has passed
        poll = min(self._timeout, LIVENESS_POLL_S)
        context = options.multiprocessing_context
        if workers and context is None and "nvidia.dali" in sys.modules:
            # DALI's threads may hold locks at fork time (a forked worker may then never
            # answer); a fork server starts clean. Plain fork otherwise, as DataLoader does.
            context = "forkserver"
        if workers:
            check_main_guard(context, options.num_workers)
        self._progress = torch.full((max(1, options.num_workers),), -1, dtype=torch.int64)
        self._progress.share_memory_()
        dataset = BatchDataset(source, pipeline.without_batch_functions(), options.errors,
                               self._tail.finisher if on_cpu else None, self._pool,
                               self._progress, targets, self._masks)
        self._loader: Optional[DataLoader] = DataLoader(
            dataset, batch_sampler=self._sampler, num_workers=options.num_workers,
            collate_fn=_only, pin_memory=options.pin_memory and not on_cpu,
            persistent_workers=workers and options.persistent_workers,
            prefetch_factor=options.prefetch_factor if workers else None,
            multiprocessing_context=context if workers else None, timeout=poll,
            worker_init_fn=WorkerInit(os.getpid()) if workers else None)
        warn_workers_once(self._loader)

    def batches(self, tasks: Sequence[BatchTask], seed: int, epoch: int,
                following: Optional[Callable[[], Sequence[BatchTask]]] = None) -> Iterator[Batch]:
        """The batches of ``tasks`` in order; ``following()`` gives the tasks that will most
        likely be asked for next (the next epoch's), to be started early."""
        if self._loader is None:
            raise RuntimeError("this loader was closed")
        if not tasks:
            return iter(())
        if not self._continues(tasks):
            self._restart(tasks, following() if following else ())
        elif len(self._sampler.pending) == len(tasks) and following is not None:
            self._sampler.extend(following())
        return self._take(len(tasks))

    def _continues(self, tasks: Sequence[BatchTask]) -> bool:
        """Is ``tasks`` what the stream has queued next? Tasks are a function of (seed, epoch,
        first position) for a given loader, so the first and last ones and the count decide
        (O(1) at an epoch start, not a comparison of every batch)."""
        count, pending = len(tasks), self._sampler.pending
        return (self._stream is not None and len(pending) >= count
                and same_task(pending[0], tasks[0])
                and same_task(pending[count - 1], tasks[count - 1]))

    def _restart(self, *tasks: Sequence[BatchTask]) -> None:
        self._drop_stream()
        self._sampler.reset(*tasks)
        assert self._loader is not None
        with forking():  # the DataLoader starts its workers here
            self._hosts = iter(self._loader)
        no_wakeup_preemption(self._hosts)
        hosts = self._checked(Deadline(self._hosts, self._timeout))
        if self._tail.device.type == "cpu":
            self._stream = self._finished(hosts)
        else:
            self._stream = apply_tail(hosts, self._tail)

    def _checked(self, hosts: Iterator[Any]) -> Iterator[HostBatch]:
        """Host batches; a worker's fastload error raised here with its own message."""
        for host in hosts:
            if isinstance(host, Failed):
                if host.slot >= 0:
                    self._sampler.arrived(host.slot)
                raise host.error()
            yield host

    def _finished(self, hosts: Iterator[HostBatch]) -> Iterator[Batch]:
        """CPU target: the workers did the tail; wrap their buffers as Batches."""
        for host in hosts:
            images = host.images
            if host.slot >= 0:
                self._sampler.arrived(host.slot)
                size = self._pipeline.at_epoch(host.epoch).output_size
                images = self._pool.view(host.slot, (len(host.labels), 3, *size))
                if host.targets is not None and host.targets.pooled:
                    assert self._masks is not None
                    host = host._replace(targets=host.targets._replace(
                        masks=self._masks.view(host.slot, (len(host.labels), *size))))
            yield self._tail.batch(images, host)

    def _take(self, count: int) -> Iterator[Batch]:
        for _ in range(count):
            if self._stream is None:
                raise RuntimeError("this loader was closed")
            try:
                batch = next(self._stream)
            except BaseException as exc:
                if worker_failure(exc):  # the watchdog, or a dead worker
                    raise self._workers_failed(exc) from None
                self._drop_stream()  # e.g. a sample's error: the next iteration starts afresh
                raise
            self._sampler.delivered()
            yield batch

    def _workers_failed(self, exc: RuntimeError) -> Exception:
        """Stop every worker (the stuck one killed), so the next iteration starts fresh ones;
        the error to raise, naming the worker and the batch it owed."""
        awaited = awaited_worker(self._hosts)
        pending = self._sampler.pending
        task = pending[0] if len(pending) else None
        on = int(self._progress[awaited[0]]) if awaited and awaited[0] < len(self._progress) \
            else -1  # read before the workers stop
        if self._loader is not None:
            shutdown_workers(self._loader, self._hosts,
                             stuck=awaited[0] if awaited and is_timeout(exc) else None)
        self._drop_stream()
        who = f"worker {awaited[0]} (pid {awaited[1]})" if awaited else "a worker"
        what = "" if task is None else (f" the batch of epoch {task.epoch} holding "
                                        f"{describe_samples(self._source, task.indices)}")
        if is_timeout(exc):
            where = (f"; it was on sample {on}: {self._source.locate(on)}" if on >= 0 else
                     "; it was between samples")
            return LoaderTimeout(
                f"{who} did not deliver{what} within timeout={self._timeout:g} s{where}. A "
                "read may hang (a stuck network filesystem?) or the worker was stopped. The "
                "workers were stopped; iterating again starts fresh ones. If such a batch is "
                "merely slow, raise the loader's timeout= (0 waits forever).")
        return RuntimeError(f"{who} failed while making{what or ' a batch'}: {exc}. The "
                            "workers were stopped; iterating again starts fresh ones.")

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._sampler.drop()
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # runs the generator's cleanup now

    def release(self) -> None:
        """``persistent_workers=False``: stop the workers at the end of each iteration."""
        self._drop_stream()
        if self._loader is not None:
            shutdown_workers(self._loader, self._hosts)
        self._hosts = None

    def close(self) -> None:
        self.release()
        self._loader = None
