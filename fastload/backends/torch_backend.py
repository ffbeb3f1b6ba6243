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
from typing import Any, Iterator, Optional

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

    def __init__(self, source: Source, pipeline: Pipeline, on_error: str = "raise") -> None:
        self.source = source
        self.pipeline = pipeline
        self.random = is_random(pipeline)
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Any:
        raise TypeError("BatchDataset renders whole batches; use __getitems__([task])")

    def __getitems__(self, tasks: list[BatchTask]) -> HostBatch:
        (task,) = tasks
        return render_batch(self.source, self.pipeline, task, self.random, self.on_error)


SKIP_TRIES = 16  # on_error="skip": how many following samples to try in place of a bad one


def render_batch(source: Source, pipeline: Pipeline, task: BatchTask, random: bool,
                 on_error: str = "raise") -> HostBatch:
    """Read, decode and transform every sample of ``task`` into one uint8 NCHW tensor.

    ``on_error="skip"``: a sample that cannot be read or decoded is replaced by the next one
    (index + 1, + 2, ... in the source) that can, with the same random draws (they belong to the
    position), and reported in ``HostBatch.skipped``.
    """
    count = len(task.indices)
    height, width = pipeline.output_size
    images = empty_shared((count, 3, height, width), torch.uint8)
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
    return HostBatch(images, torch.from_numpy(labels), torch.from_numpy(indices),
                     torch.from_numpy(task.positions), torch.from_numpy(task.padded),
                     torch.from_numpy(erase), tuple(skipped))


def empty_shared(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """In a worker, allocate straight in shared memory so sending the batch copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
    storage = torch.UntypedStorage._new_shared(nbytes)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


class _TaskSampler:
    """The DataLoader's batch_sampler: yields ``[task]`` for each task of the current epoch."""

    def __init__(self) -> None:
        self.tasks: list[BatchTask] = []

    def __iter__(self) -> Iterator[list[BatchTask]]:
        return ([task] for task in self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


def _only(batch: HostBatch) -> HostBatch:
    return batch


class TorchProducer:
    """Runs BatchTasks through a persistent-worker DataLoader, in order, into final Batches."""

    def __init__(self, source: Source, pipeline: Pipeline, *, device: torch.device,
                 num_workers: int, prefetch_factor: int,
                 multiprocessing_context: Optional[Any] = None, on_error: str = "raise") -> None:
        self._sampler = _TaskSampler()
        workers = num_workers > 0
        if workers and multiprocessing_context is None and "nvidia.dali" in sys.modules:
            # DALI's threads may hold locks at fork time (seen: forked workers that never
            # answer); a fork server starts clean. Plain fork otherwise, as DataLoader does.
            multiprocessing_context = "forkserver"
        self._tail = DeviceTail(pipeline, device)
        pin_memory = device.type == "cuda"
        self._loader: Optional[DataLoader] = DataLoader(
            BatchDataset(source, pipeline, on_error), batch_sampler=self._sampler,
            num_workers=num_workers,
            collate_fn=_only, pin_memory=pin_memory, persistent_workers=workers,
            prefetch_factor=prefetch_factor if workers else None,
            multiprocessing_context=multiprocessing_context if workers else None)

    def batches(self, tasks: list[BatchTask], seed: int, epoch: int) -> Iterator[Batch]:
        if self._loader is None:
            raise RuntimeError("this loader was closed")
        self._sampler.tasks = tasks
        return apply_tail(iter(self._loader), self._tail, seed, epoch)

    def close(self) -> None:
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
