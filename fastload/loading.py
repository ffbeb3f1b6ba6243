"""``fastload.loader``: the drop-in for ``torch.utils.data.DataLoader`` in a training loop."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from . import sharding
from .batch import Batch, EpochTasks
from .dist import DistArg, DistInfo, check_dist, resolve
from .errors import SpecError
from .sources import Source, open_source
from .spec import Pipeline

STATE_VERSION = 1
BACKENDS = ("auto", "torch", "dali", "dali-native")


@dataclass(frozen=True)
class EpochPlan:
    """What one rank reads in one epoch, as configured (the sharding contract's inputs)."""

    samples: int
    batch_size: int
    shuffle: bool
    seed: int
    last_batch: str

    def batches(self, world: int, start: int = 0) -> int:
        """Batches each rank reads from global position ``start`` to the end of an epoch."""
        per_rank = sharding.samples_per_rank(self.samples - start, world, self.batch_size,
                                             self.last_batch)
        return -(-per_rank // self.batch_size)

    def shard(self, dist: DistInfo, epoch: int, start: int) -> sharding.Shard:
        return sharding.shard(self.samples, batch_size=self.batch_size, rank=dist.rank,
                              world=dist.world_size, seed=self.seed, epoch=epoch,
                              shuffle=self.shuffle, last_batch=self.last_batch, start=start)


class Loader:
    """Iterates batches of ``(images, labels)``; see ``fastload.loader`` for the arguments.

    Epochs: iterating to the end advances to the next epoch (a new shuffle, as DataLoader does);
    ``set_epoch(e)`` selects epoch ``e`` explicitly and is a no-op when ``e`` is the current
    epoch, so a resumed loader keeps its position through the usual
    ``for epoch in range(start, end): loader.set_epoch(epoch)`` loop. Breaking out of the loop
    and iterating again continues where the last batch was taken.
    """

    def __init__(self, source: Source, pipeline: Pipeline, plan: EpochPlan, producer: Any,
                 device: Any, dist: Optional[DistInfo], backend: str) -> None:
        self.source = source
        self.pipeline = pipeline
        self.plan = plan
        self.backend = backend
        self.device = device
        self._producer = producer
        self._dist = dist
        self._epoch = 0
        self._position = 0  # global positions of this epoch already yielded (on every rank)
        self.skipped_count = 0  # samples replaced under on_error="skip", this process
        self.skipped_files: dict[str, str] = {}  # location -> first error, warned once each
        self._task_memo: dict[tuple[int, ...], EpochTasks] = {}

    # --- the DataLoader surface ---------------------------------------------------------------
    def __len__(self) -> int:
        """Batches this rank yields in a full epoch; the same on every rank."""
        return self.plan.batches(resolve(self._dist).world_size)

    def __iter__(self) -> Iterator[Batch]:
        dist = resolve(self._dist)
        epoch, start = self._epoch, self._position
        tasks = self._tasks(dist, epoch, start)
        following = lambda: self._tasks(dist, epoch + 1, 0)  # noqa: E731 - what comes next
        for batch in self._producer.batches(tasks, self.plan.seed, epoch, following):
            if (self._epoch, self._position) != (epoch, start):
                raise RuntimeError("the loader's epoch or position changed during iteration "
                                   "(set_epoch/load_state_dict inside the loop?); start a new loop")
            start += dist.world_size * len(batch[1])
            self._position = start
            if batch.skipped:
                self._count_skipped(batch.skipped)
            yield batch
        if (self._epoch, self._position) == (epoch, start):
            self._epoch, self._position = epoch + 1, 0

    def _tasks(self, dist: DistInfo, epoch: int, start: int) -> EpochTasks:
        """This rank's tasks from ``start`` on, made on demand; the same object when asked
        again (the next epoch's are asked for at the start of this one, and again when it
        comes)."""
        plan = self.plan
        key = (epoch, start, dist.rank, dist.world_size, plan.seed)
        if key not in self._task_memo:
            count = plan.batches(dist.world_size, start)
            while len(self._task_memo) >= 4:  # this epoch's and the next are what repeat
                del self._task_memo[next(iter(self._task_memo))]
            self._task_memo[key] = EpochTasks(plan.seed, epoch, count,
                                              lambda: plan.shard(dist, epoch, start))
        return self._task_memo[key]

    def _count_skipped(self, skipped: tuple) -> None:
        for where, reason in skipped:
            self.skipped_count += 1
            if where not in self.skipped_files:
                self.skipped_files[where] = reason
                warnings.warn(f"fastload: skipped a bad sample ({reason}); a readable one takes "
                              "its place (on_error='skip')", RuntimeWarning, stacklevel=3)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its shuffle and augmentation draws); same-epoch calls keep position."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise SpecError(f"set_epoch: epoch={epoch!r} must be a non-negative int")
        if epoch != self._epoch:
            self._epoch, self._position = epoch, 0

    @property
    def epoch(self) -> int:
        return self._epoch

    # --- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{version, seed, epoch, position, samples, shuffle}``; the same on every rank."""
        return {"version": STATE_VERSION, "seed": self.plan.seed, "epoch": self._epoch,
                "position": self._position, "samples": self.plan.samples,
                "shuffle": self.plan.shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration yields exactly the batches not yet taken (any world size)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise SpecError(f"load_state_dict: expected a fastload loader state of version "
                            f"{STATE_VERSION}, got {state!r:.200}")
        if state["samples"] != self.plan.samples:
            raise SpecError(f"load_state_dict: the state is for a dataset of {state['samples']} "
                            f"samples, this source has {self.plan.samples}")
        if state["shuffle"] != self.plan.shuffle:
            raise SpecError(f"load_state_dict: the state has shuffle={state['shuffle']}, this "
                            f"loader shuffle={self.plan.shuffle}; make them match")
        for key in ("seed", "epoch", "position"):
            if not isinstance(state[key], int) or state[key] < 0:
                raise SpecError(f"load_state_dict: {key}={state[key]!r} must be an int >= 0")
        if state["position"] and not getattr(self._producer, "resumable", True):
            raise SpecError(f"load_state_dict: backend={self.backend!r} cannot resume mid-epoch "
                            "(DALI's readers keep their own position); use backend='dali'")
        self.plan = EpochPlan(self.plan.samples, self.plan.batch_size, self.plan.shuffle,
                              state["seed"], self.plan.last_batch)
        self._epoch, self._position = state["epoch"], state["position"]

    # --- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers. Idempotent."""
        self._producer.close()

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Loader(source={self.source!r}, backend={self.backend!r}, "
                f"batch_size={self.plan.batch_size}, device={str(self.device)!r})")


def loader(source: Union[str, Path, Source], pipeline: Pipeline, batch_size: int, *,
           backend: str = "auto", shuffle: bool = True, seed: int = 0,
           num_workers: Optional[int] = None, device: Any = None,
           last_batch: Optional[str] = None,
           dist: DistArg = None, prefetch_factor: int = 2,
           multiprocessing_context: Any = None, on_error: str = "raise") -> Loader:
    """A loader over ``source`` (a path or a Source) running ``pipeline`` in batches.

    - ``backend``: ``"torch"``, ``"dali"``, or ``"auto"`` (DALI when importable and a GPU is
      present, else torch); ``"dali-native"`` opts in to DALI's own readers, order and random
      crops (faster on few cores; no mid-epoch resume; see ``fastload.backends.dali_native``).
    - ``num_workers``: decode processes (default: the CPUs this process may use).
    - ``device``: where batches land (default ``"cuda"`` when available, else ``"cpu"``).
    - ``last_batch``: ``"pad"`` (default) | ``"drop"`` | ``"partial"`` (see
      ``fastload.sharding``); ``dali-native`` follows DALI's rule, which is ``"partial"``.
    - ``dist``: ``(rank, world_size)``; None reads torch.distributed at each epoch start when
      it is initialized (so it may be initialized before or after the loader is made).
    - ``on_error``: ``"raise"`` (an error naming the file/record/key and sample index) or
      ``"skip"`` (the next readable sample takes the bad one's place, deterministically; counted
      in ``loader.skipped_count`` / ``loader.skipped_files``, one warning per file).
    """
    import torch

    from .backends import make_producer, pick_backend

    if not isinstance(pipeline, Pipeline):
        raise SpecError(f"pipeline={pipeline!r} must be a fastload.Pipeline")
    for name, value in (("batch_size", batch_size), ("prefetch_factor", prefetch_factor)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"loader: {name}={value!r} must be an int >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"loader: seed={seed!r} must be an int >= 0")
    if on_error not in ("raise", "skip"):
        raise SpecError(f"loader: on_error={on_error!r} must be 'raise' or 'skip'")
    if backend not in BACKENDS:
        raise SpecError(f"loader: backend={backend!r} must be one of {BACKENDS}")
    if last_batch is None:
        last_batch = "partial" if backend == "dali-native" else "pad"
    if last_batch not in sharding.POLICIES:
        raise SpecError(f"loader: last_batch={last_batch!r} must be one of {sharding.POLICIES}")
    if backend == "dali-native" and last_batch != "partial":
        raise SpecError(f"loader: backend='dali-native' pads shards DALI's way "
                        f"(last_batch='partial'), not last_batch={last_batch!r}; use backend='dali'")
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0))
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise SpecError(f"loader: num_workers={num_workers!r} must be an int >= 0")
    dist_info = check_dist(dist)
    try:
        device = torch.device(device if device is not None else
                              ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError) as exc:
        raise SpecError(f"loader: device={device!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    src = open_source(source)
    plan = EpochPlan(len(src), batch_size, bool(shuffle), seed, last_batch)
    chosen = pick_backend(backend, device)
    producer = make_producer(chosen, src, pipeline, device=device, batch_size=batch_size,
                             num_workers=num_workers, prefetch_factor=prefetch_factor,
                             multiprocessing_context=multiprocessing_context,
                             shuffle=bool(shuffle), seed=seed, dist=resolve(dist_info),
                             on_error=on_error)
    return Loader(src, pipeline, plan, producer, device, dist_info, chosen)
