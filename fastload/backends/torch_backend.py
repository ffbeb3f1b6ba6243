"""The torch backend: a normal Dataset + persistent-worker DataLoader.

Workers receive one ``BatchTask`` per batch (sample indices and their global positions), read
and decode each sample, crop/resize/flip it into a uint8 (B, 3, H, W) tensor allocated in
shared memory, and draw each sample's random parameters from (seed, epoch, position) alone.
So results are identical whatever ``num_workers`` is, and the main process receives one shared
buffer per batch (no collate copy), uint8 all the way to the device tail, which runs in the
main process (on a CUDA side stream when the target is a GPU).
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..batch import Batch, BatchTask, HostBatch
from ..draws import sample_rng
from ..errors import DecodeError, SourceError
from ..geometry import is_random, plan_sample
from ..imaging import render
from ..sources.base import Source
from ..spec import Pipeline
from .tail import DeviceTail, apply_tail


class BatchDataset(Dataset):
    """Map-style dataset whose ``__getitems__`` renders one whole BatchTask."""

    def __init__(self, source: Source, pipeline: Pipeline, on_error: str = "raise",
                 pool: Optional[torch.Tensor] = None) -> None:
        self.source = source
        self.pipeline = pipeline
        self.random = is_random(pipeline)
        self.on_error = on_error
        self.pool = pool  # (slots, B, 3, H, W) uint8 in shared memory, or None

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Any:
        raise TypeError("BatchDataset renders whole batches; use __getitems__([task])")

    def __getitems__(self, tasks: list[BatchTask]) -> HostBatch:
        (task,) = tasks
        if task.slot < 0 or self.pool is None:
            return render_batch(self.source, self.pipeline, task, self.random, self.on_error)
        out = self.pool[task.slot][:len(task.indices)]
        host = render_batch(self.source, self.pipeline, task, self.random, self.on_error, out)
        return host._replace(images=None, slot=task.slot)  # the pixels are in the pool already


SKIP_TRIES = 16  # on_error="skip": how many following samples to try in place of a bad one


def render_batch(source: Source, pipeline: Pipeline, task: BatchTask, random: bool,
                 on_error: str = "raise", out: Optional[torch.Tensor] = None) -> HostBatch:
    """Read, decode and transform every sample of ``task`` into one uint8 NCHW tensor.

    ``on_error="skip"``: a sample that cannot be read or decoded is replaced by the next one
    (index + 1, + 2, ... in the source) that can, with the same random draws (they belong to the
    position), and reported in ``HostBatch.skipped``. ``out``: where to write the images
    (default: a new tensor, in shared memory in a worker).
    """
    count = len(task.indices)
    height, width = pipeline.output_size
    images = empty_shared((count, 3, height, width), torch.uint8) if out is None else out
    labels = np.empty(count, dtype=np.int64)
    erase = np.zeros((count, 4), dtype=np.int32)
    indices = task.indices.copy()
    skipped = []
    for k in range(count):
        position = int(task.positions[k])
        for attempt in range(SKIP_TRIES if on_error == "skip" else 1):
            index = (int(task.indices[k]) + attempt) % len(source)
            rng = sample_rng(task.seed, task.epoch, position) if random else None
            try:
                data, labels[k] = source.read(index)
                plan = render(data, source.locate(index),
                              lambda h, w: plan_sample(pipeline, h, w, rng), images[k])
                break
            except (DecodeError, SourceError) as exc:
                if on_error != "skip" or attempt == SKIP_TRIES - 1:
                    raise
                skipped.append((source.locate(index), str(exc)))
        indices[k] = index
        erase[k] = plan.erase
    return HostBatch(images, labels, indices, task.positions, task.padded, erase, task.seed,
                     task.epoch, tuple(skipped))


def empty_shared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """In a worker, allocate straight in shared memory so sending the batch copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
    storage = torch.UntypedStorage._new_shared(nbytes)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


class _TaskQueue:
    """The DataLoader's batch_sampler: hands out queued tasks one ``[task]`` at a time.

    Tasks may be added while the DataLoader runs (the next epoch's, so the workers never idle
    at an epoch boundary); once the queue has run dry, that iteration is over and ``extend``
    says so (returns False).
    """

    def __init__(self, slots: int = 0) -> None:
        self._queue: deque[BatchTask] = deque()
        self._lock = threading.Lock()
        self._finished = False
        self.slots = slots
        self._free = list(range(slots))  # pool buffers no batch in flight uses

    def reset(self, tasks: list[BatchTask]) -> None:
        """A new iteration (the DataLoader has drained the old one: every slot is free)."""
        with self._lock:
            self._queue, self._finished = deque(tasks), False
            self._free = list(range(self.slots))

    def release(self, slot: int) -> None:
        if slot >= 0:
            with self._lock:
                self._free.append(slot)

    def extend(self, tasks: list[BatchTask]) -> bool:
        with self._lock:
            if self._finished:
                return False
            self._queue.extend(tasks)
            return True

    def __iter__(self) -> Iterator[list[BatchTask]]:
        while True:
            with self._lock:
                if not self._queue:
                    self._finished = True
                    return
                task = self._queue.popleft()
                if self._free:  # else a fresh buffer, as without a pool
                    task = task._replace(slot=self._free.pop())
            yield [task]

    def __len__(self) -> int:
        return len(self._queue)


def same_task(a: BatchTask, b: BatchTask) -> bool:
    return (a.seed, a.epoch) == (b.seed, b.epoch) and np.array_equal(a.positions, b.positions)


def _only(batch: HostBatch) -> HostBatch:
    return batch


class TorchProducer:
    """Runs BatchTasks through a persistent-worker DataLoader, in order, into final Batches.

    One stream (DataLoader iterator + device tail) runs across epochs: when an epoch's tasks are
    queued, the next epoch's (the Loader's ``following``) are queued behind them, so workers
    and tail go straight on into the next epoch. The next ``batches`` call continues the
    stream when it asks for exactly what is queued (the usual loop, or a ``break`` and a new
    loop); anything else (``set_epoch`` to another epoch, ``load_state_dict``) drops the
    speculative work and restarts the stream at the requested batch.
    """

    def __init__(self, source: Source, pipeline: Pipeline, *, device: torch.device,
                 batch_size: int, num_workers: int, prefetch_factor: int,
                 multiprocessing_context: Optional[Any] = None, on_error: str = "raise") -> None:
        # CPU target: workers render into a fixed pool of shared batch buffers that the tail
        # hands back once it has read them (a fresh 10-40 MB segment per batch costs page
        # faults in the worker and again in this process); enough for every batch in flight
        slots = prefetch_factor * max(1, num_workers) + 2 if device.type == "cpu" else 0
        height, width = pipeline.output_size
        self._pool = (torch.empty((slots, batch_size, 3, height, width), dtype=torch.uint8)
                      .share_memory_() if slots else None)
        self._sampler = _TaskQueue(slots)
        self._stream: Optional[Iterator[Batch]] = None
        self._pending: deque[BatchTask] = deque()  # queued on the stream, not yet handed out
        workers = num_workers > 0
        if workers and multiprocessing_context is None and "nvidia.dali" in sys.modules:
            # DALI's threads may hold locks at fork time (seen: forked workers that never
            # answer); a fork server starts clean. Plain fork otherwise, as DataLoader does.
            multiprocessing_context = "forkserver"
        self._tail = DeviceTail(pipeline, device)
        pin_memory = device.type == "cuda"
        self._loader: Optional[DataLoader] = DataLoader(
            BatchDataset(source, pipeline, on_error, self._pool), batch_sampler=self._sampler,
            num_workers=num_workers,
            collate_fn=_only, pin_memory=pin_memory, persistent_workers=workers,
            prefetch_factor=prefetch_factor if workers else None,
            multiprocessing_context=multiprocessing_context if workers else None)

    def batches(self, tasks: list[BatchTask], seed: int, epoch: int,
                following: Optional[Callable[[], list[BatchTask]]] = None) -> Iterator[Batch]:
        """The batches of ``tasks`` in order; ``following()`` gives the tasks that will most
        likely be asked for next (the next epoch's), to be started early."""
        if self._loader is None:
            raise RuntimeError("this loader was closed")
        if not tasks:
            return iter(())
        if not self._continues(tasks):
            self._restart(tasks + (following() if following else []))
        elif len(self._pending) == len(tasks) and following is not None:
            ahead = following()
            if self._sampler.extend(ahead):
                self._pending.extend(ahead)
        return self._take(len(tasks))

    def _continues(self, tasks: list[BatchTask]) -> bool:
        return (self._stream is not None and len(self._pending) >= len(tasks)
                and all(same_task(a, b) for a, b in zip(self._pending, tasks)))

    def _restart(self, tasks: list[BatchTask]) -> None:
        self._drop_stream()
        self._sampler.reset(tasks)
        self._pending = deque(tasks)
        assert self._loader is not None
        self._stream = apply_tail(self._from_pool(iter(self._loader)), self._tail)

    def _from_pool(self, hosts: Iterator[HostBatch]) -> Iterator[HostBatch]:
        """Host batches with their pool buffer in place; a buffer goes back to the pool when
        the tail asks for the next batch (it has finished reading this one by then)."""
        held = -1
        for host in hosts:
            self._sampler.release(held)
            held = host.slot
            if held >= 0:
                assert self._pool is not None
                host = host._replace(images=self._pool[held][:len(host.labels)])
            yield host

    def _take(self, count: int) -> Iterator[Batch]:
        for _ in range(count):
            if self._stream is None:
                raise RuntimeError("this loader was closed")
            try:
                batch = next(self._stream)
            except BaseException:
                self._drop_stream()  # a worker's error: the next iteration starts afresh
                raise
            self._pending.popleft()
            yield batch

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._pending.clear()
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # stops and joins the tail thread

    def close(self) -> None:
        self._drop_stream()
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
