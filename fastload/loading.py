"""``fastload.loader``: the drop-in for ``torch.utils.data.DataLoader`` in a training loop."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .batch import Batch, EpochTasks
from .errors import SpecError
from .ops.spec import Pipeline
from .options import AUTO_LAST_BATCH, DEFAULT_SKIP_LIMIT, LoaderOptions
from .order import sharding
from .order.dist import DistArg, DistInfo, check_dist, resolve
from .sources import Source, open_source
from .sources.mix import Mix

STATE_VERSION = 1


@dataclass(frozen=True)
class EpochPlan:
    """What one rank reads in one epoch, as configured (the sharding contract's inputs).

    ``last_batch="auto"`` is resolved per world size: "partial" for one process (each sample
    exactly once, as DataLoader), "pad" for several ranks (the same batch count everywhere).
    """

    samples: int
    batch_size: int
    shuffle: bool
    seed: int
    last_batch: str
    window: int = 0  # shard-aware order: shuffle within this many shards at a time (0: global)
    groups: Any = field(default=None, compare=False, repr=False)  # each sample's shard number
    # the epoch's order when it is not a permutation of the source: weighted draws
    # (order.sampling.Draws) or a mixture's (order.mixture.MixtureOrder)
    draws: Any = field(default=None, compare=False, repr=False)

    def policy(self, world: int) -> str:
        if self.last_batch == AUTO_LAST_BATCH:
            return "partial" if world == 1 else "pad"
        return self.last_batch

    def batches(self, world: int, start: int = 0) -> int:
        """Batches each rank reads from global position ``start`` to the end of an epoch."""
        per_rank = sharding.samples_per_rank(self.samples - start, world, self.batch_size,
                                             self.policy(world))
        return -(-per_rank // self.batch_size)

    def shard(self, dist: DistInfo, epoch: int, start: int) -> sharding.Shard:
        order = None if self.draws is None else self.draws.order(self.seed, epoch)
        return sharding.shard(self.samples, batch_size=self.batch_size, rank=dist.rank,
                              world=dist.world_size, seed=self.seed, epoch=epoch,
                              shuffle=self.shuffle, last_batch=self.policy(dist.world_size),
                              start=start, groups=self.groups, window=self.window,
                              order=order)

    def sampling_state(self) -> Any:
        return None if self.draws is None else self.draws.state()


class Loader:
    """Iterates batches of ``(images, labels)``; see ``fastload.loader`` for the arguments.

    Iteration follows DataLoader's habits: each new ``iter(loader)`` (each ``for`` loop, each
    ``next(iter(loader))`` peek) starts the current epoch from its beginning, except the first
    one after ``load_state_dict``, which starts at the restored position. Iterating to the end
    advances to the next epoch (a new shuffle, as DataLoader does); ``set_epoch(e)`` selects
    epoch ``e`` and is a no-op when ``e`` is the current epoch, so a resumed loader keeps its
    position through the usual ``for epoch in range(start, end): loader.set_epoch(epoch)``.
    ``state_dict()`` is the position of the latest iteration (also after a ``break``).
    One iteration is live at a time: starting a new one ends the previous one.
    """

    def __init__(self, source: Source, pipeline: Pipeline, plan: EpochPlan, producer: Any,
                 device: Any, dist: Optional[DistInfo], backend: str,
                 options: LoaderOptions) -> None:
        self.source = source
        self.pipeline = pipeline
        self.plan = plan
        self.backend = backend
        self.device = device
        self._producer = producer
        self._dist = dist
        self.options = options
        self._epoch = 0
        self._position = 0  # global positions of this epoch already yielded (on every rank)
        self._restored = False  # the next iteration starts at _position (load_state_dict)
        self._generation = 0  # which iteration is live
        self._live: Optional[Iterator[Batch]] = None  # the live iteration's producer stream
        self.skipped_files: dict[str, str] = {}  # bad sample location -> first error
        self._task_memo: dict[tuple[int, ...], EpochTasks] = {}
        self._mix = source if isinstance(source, Mix) else None

    def _mix_sources(self, indices: Any) -> Any:
        """``batch.source``: each sample's Mix component (``batch.indices`` is a CPU tensor)."""
        import torch

        return torch.from_numpy(self._mix.component_of(indices.numpy()).astype("int64"))

    # --- the DataLoader surface ---------------------------------------------------------------
    @property
    def dataset(self) -> Source:
        """The source (DataLoader's ``dataset``): ``len(loader.dataset)`` samples."""
        return self.source

    @property
    def batch_size(self) -> int:
        return self.plan.batch_size

    @property
    def num_workers(self) -> int:
        return self.options.num_workers

    @property
    def drop_last(self) -> bool:
        return self.plan.policy(resolve(self._dist).world_size) == "drop"

    @property
    def pin_memory(self) -> bool:
        return self.options.pin_memory

    @property
    def prefetch_factor(self) -> int:
        return self.options.prefetch_factor

    @property
    def persistent_workers(self) -> bool:
        return self.options.persistent_workers

    @property
    def timeout(self) -> float:
        return self.options.timeout

    @property
    def sampler(self) -> "LoaderSampler":
        """This rank's sample order for the current epoch, as a sampler: ``len``, iteration
        over sample indices, and ``set_epoch`` (so ``loader.sampler.set_epoch(e)``, written for
        a DistributedSampler, selects the epoch here too)."""
        return LoaderSampler(self)

    @property
    def batch_sampler(self) -> None:
        """None: the loader batches itself (code that looks for a custom batch sampler, such
        as Lightning's, then reads ``sampler``)."""
        return None

    def __len__(self) -> int:
        """Batches this rank yields in a full epoch; the same on every rank."""
        return self.plan.batches(resolve(self._dist).world_size)

    def __iter__(self) -> Iterator[Batch]:
        self._end_live()
        if not self._restored:
            self._position = 0
        self._restored = False
        self._generation += 1
        return self._iterate(self._generation)

    def _iterate(self, generation: int) -> Iterator[Batch]:
        dist = resolve(self._dist)
        epoch, start = self._epoch, self._position
        tasks = self._tasks(dist, epoch, start)
        following = lambda: self._tasks(dist, epoch + 1, 0)  # noqa: E731 - what comes next
        stream = self._producer.batches(tasks, self.plan.seed, epoch,
                                        following if self.options.persistent_workers else None)
        self._live = stream
        try:
            while True:
                self._check_live(generation, epoch, start)
                try:
                    batch = next(stream)
                except StopIteration:
                    break
                start += dist.world_size * len(batch[1])
                self._position = start
                if self._mix is not None:
                    batch.source = self._mix_sources(batch.indices)
                if batch.skipped:
                    self._note_skipped(batch.skipped)
                yield batch
            if (self._epoch, self._position) == (epoch, start):
                self._epoch, self._position = epoch + 1, 0
        finally:
            if self._generation == generation:
                self._end_live()

    def _check_live(self, generation: int, epoch: int, position: int) -> None:
        if generation != self._generation:
            raise RuntimeError("this iterator was ended by a newer iter(loader): a loader runs "
                               "one iteration at a time (each new iter() starts the epoch "
                               "again); keep using the newest iterator")
        if (self._epoch, self._position) != (epoch, position):
            raise RuntimeError("the loader's epoch or position changed during iteration "
                               "(set_epoch/load_state_dict inside the loop?); start a new loop")

    def _end_live(self) -> None:
        """Stop the live iteration's producer stream (non-persistent workers: stop them)."""
        live, self._live = self._live, None
        if live is not None:
            close = getattr(live, "close", None)
            if close is not None:
                close()
        if not self.options.persistent_workers:
            self._producer.release()

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

    def _note_skipped(self, skipped: tuple) -> None:
        for where, reason in skipped:
            if where not in self.skipped_files:
                self.skipped_files[where] = reason
                warnings.warn(f"fastload: skipped a bad sample ({reason}); a readable one takes "
                              "its place (on_error='skip')", RuntimeWarning, stacklevel=3)

    @property
    def skipped_count(self) -> int:
        """Distinct bad samples skipped so far in this process (``on_error="skip"``): a bad
        file met again (next epoch, a padded repeat) is not counted again."""
        return len(self.skipped_files)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its shuffle and augmentation draws); same-epoch calls keep position."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise SpecError(f"set_epoch: epoch={epoch!r} must be a non-negative int")
        if epoch != self._epoch:
            self._epoch, self._position, self._restored = epoch, 0, False

    @property
    def epoch(self) -> int:
        return self._epoch

    # --- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{version, seed, epoch, position, samples, shuffle, shard_window, sampling}``; the
        same on every rank."""
        return {"version": STATE_VERSION, "seed": self.plan.seed, "epoch": self._epoch,
                "position": self._position, "samples": self.plan.samples,
                "shuffle": self.plan.shuffle, "shard_window": self.plan.window or None,
                "sampling": self.plan.sampling_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration yields exactly the batches not yet taken (any world size)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise SpecError(f"load_state_dict: expected a fastload loader state of version "
                            f"{STATE_VERSION}, got {state!r:.200}")
        if state.get("sampling") != self.plan.sampling_state():
            raise SpecError(f"load_state_dict: the state was drawn with sampling="
                            f"{state.get('sampling')}, this loader draws with "
                            f"{self.plan.sampling_state()}; make them match (the epoch's "
                            "order depends on it)")
        if state["samples"] != self.plan.samples:
            raise SpecError(f"load_state_dict: the state is for a dataset of {state['samples']} "
                            f"samples, this source has {self.plan.samples}")
        if state["shuffle"] != self.plan.shuffle:
            raise SpecError(f"load_state_dict: the state has shuffle={state['shuffle']}, this "
                            f"loader shuffle={self.plan.shuffle}; make them match")
        if state.get("shard_window") != (self.plan.window or None):
            raise SpecError(f"load_state_dict: the state has shard_window="
                            f"{state.get('shard_window')}, this loader shard_window="
                            f"{self.plan.window or None}; make them match (the epoch's order "
                            "depends on it)")
        for key in ("seed", "epoch", "position"):
            if not isinstance(state[key], int) or state[key] < 0:
                raise SpecError(f"load_state_dict: {key}={state[key]!r} must be an int >= 0")
        if state["position"] and not self._producer.resumable:
            raise SpecError(f"load_state_dict: backend={self.backend!r} cannot resume mid-epoch "
                            "(DALI's readers keep their own position); use backend='dali'")
        self.plan = replace(self.plan, seed=state["seed"])
        self._epoch, self._position = state["epoch"], state["position"]
        self._restored = True

    # --- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers. Idempotent."""
        self._live = None
        self._producer.close()

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Loader(source={self.source!r}, backend={self.backend!r}, "
                f"batch_size={self.plan.batch_size}, device={str(self.device)!r})")


class LoaderSampler:
    """``loader.sampler``: a view of the loader's order (see ``Loader.sampler``)."""

    def __init__(self, owner: Loader) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)

    def _shard(self) -> sharding.Shard:
        owner = self._owner
        return owner.plan.shard(resolve(owner._dist), owner.epoch, 0)

    def __len__(self) -> int:
        return int(len(self._shard().indices))

    def __iter__(self) -> Iterator[int]:
        return (int(i) for i in self._shard().indices)

    def __repr__(self) -> str:
        plan = self._owner.plan
        return (f"LoaderSampler(shuffle={plan.shuffle}, seed={plan.seed}, "
                f"epoch={self._owner.epoch}, weighted={plan.draws is not None})")


def loader(source: Union[str, Path, Source, Any], pipeline: Pipeline, batch_size: int = 1,
           shuffle: bool = False, *, backend: str = "auto", seed: Optional[int] = None,
           num_workers: Optional[int] = None, device: Any = None,
           last_batch: Optional[str] = None, drop_last: bool = False,
           dist: DistArg = None, prefetch_factor: Optional[int] = 2,
           multiprocessing_context: Any = None, on_error: str = "raise",
           timeout: Optional[float] = None, pin_memory: bool = True,
           persistent_workers: bool = True, generator: Any = None,
           shard_window: Optional[int] = None, skip_limit: int = DEFAULT_SKIP_LIMIT,
           sampling: Any = None, ignore_index: int = 255, min_box_size: float = 1.0,
           **dataloader_kwargs: Any) -> Loader:
    """A loader over ``source`` running ``pipeline`` in batches: the drop-in for
    ``torch.utils.data.DataLoader(dataset, batch_size, shuffle, ...)``.

    - ``source``: a path (ImageFolder, TFRecord, LMDB; detected or prefixed ``folder:``,
      ``tfrecord:``, ``lmdb:``), a Source (``len``, ``read(i) -> (bytes, label)``,
      ``describe()``, ``locate(i)``) or a map-style dataset whose items are
      ``(encoded image bytes, int label)``.
    - ``shuffle``: False by default, as DataLoader (pass ``shuffle=True`` to train).
    - ``backend``: ``"torch"``, ``"dali"``, or ``"auto"`` (DALI when importable and a GPU is
      present, else torch); ``"dali-native"`` opts in to DALI's own readers, order and random
      crops (faster on few cores; no mid-epoch resume; see ``fastload.backends.dali.native``).
    - ``num_workers``: decode processes (default: the CPUs this process may use).
    - ``device``: where batches land (default ``"cuda"`` when available, else ``"cpu"``).
    - ``last_batch``: None (default: ``"partial"`` in one process, so each sample is seen once
      as with DataLoader; ``"pad"`` across ranks, so every rank has the same batch count, the
      repeats marked in ``batch.padded``) | ``"pad"`` | ``"drop"`` | ``"partial"`` (see
      ``fastload.order.sharding``). ``drop_last=True`` is ``last_batch="drop"``.
    - ``dist``: ``(rank, world_size)``; None reads torch.distributed at each epoch start when
      it is initialized (so it may be initialized before or after the loader is made).
    - ``timeout``: seconds a batch may take before a ``LoaderTimeout`` names the worker, the
      samples and their files (default 600; 0 waits forever). Needs worker processes.
    - ``pin_memory``: page-locked host batches for the copy to a GPU (default True; no effect
      on a CPU target). ``persistent_workers``: True (default) keeps the workers between
      epochs (and starts the next epoch's batches early); False stops them when an iteration
      ends, as DataLoader does.
    - ``seed`` (default 0), or DataLoader's ``generator=`` (its initial seed is used): shuffle
      and augmentation draws come from (seed, epoch, sample position) alone.
    - ``on_error``: ``"raise"`` (an error naming the file/record/key and sample index) or
      ``"skip"`` (the next readable sample takes the bad one's place, deterministically; listed
      in ``loader.skipped_files``, one warning per file). ``skip_limit`` (default 16): how many
      consecutive samples are tried for one place before skipping gives up with an error that
      names them (a damaged folder or shard is not silently skipped over). A source that
      cannot be read at all (``SourceUnavailable``: storage unreachable after its retries,
      access refused) is raised at once either way.
    - ``shard_window``: None (default: one global shuffle) or ``w``: the shard-aware order of
      a sharded source (TFRecord, LMDB, remote shards): shards permuted, read ``w`` at a time,
      samples shuffled within those ``w`` (see ``fastload.order.sharding``). Fewer objects in use at
      once (request locality, a small cache working set) for less randomness.
    - Targets beyond a class index (a source's ``read`` giving ``(bytes, label, extras)``; see
      ``fastload.backends.targets``): ``ignore_index`` (default 255) fills a mask where the
      crop leaves the image; boxes narrower or lower than ``min_box_size`` output pixels
      (default 1) are dropped. The batch carries ``masks``, ``boxes`` / ``box_labels`` /
      ``box_counts`` and the other fields by name.

    The other DataLoader keywords (``sampler``, ``batch_sampler``, ``collate_fn``,
    ``worker_init_fn``, ...) raise a SpecError that names the fastload equivalent.
    """
    from .backends import make_producer, pick_backend
    from .device import check_device

    if not isinstance(pipeline, Pipeline):
        raise SpecError(f"pipeline={pipeline!r} must be a fastload.Pipeline")
    sampler = dataloader_kwargs.pop("sampler", None)
    if sampler is not None:
        sampling, seed = _from_sampler(sampler, sampling, seed, generator)
    options = LoaderOptions.check(
        batch_size, backend=backend, shuffle=shuffle, seed=seed, generator=generator,
        num_workers=num_workers, last_batch=last_batch, drop_last=drop_last,
        prefetch_factor=prefetch_factor, multiprocessing_context=multiprocessing_context,
        on_error=on_error, timeout=timeout, pin_memory=pin_memory,
        persistent_workers=persistent_workers, skip_limit=skip_limit, ignore_index=ignore_index,
        min_box_size=min_box_size, **dataloader_kwargs)
    dist_info = check_dist(dist)
    target = check_device(device)
    src = open_source(source)
    _check_classes(pipeline, src)
    window, groups = _shard_window(shard_window, options.shuffle, src)
    draws = _draws(sampling, src, options.shuffle, window)
    samples = len(src) if draws is None else draws.num_samples
    plan = EpochPlan(samples, batch_size, options.shuffle, options.seed, options.last_batch,
                     window, groups, draws)
    chosen = pick_backend(options.backend, target)
    if chosen == "dali-native" and draws is not None:
        raise SpecError("loader: backend='dali-native' reads in DALI's own order, so weighted "
                        "draws and mixtures cannot apply; use backend='dali' or 'torch'")
    producer = make_producer(chosen, src, pipeline, options, device=target,
                             dist=resolve(dist_info))
    return Loader(src, pipeline, plan, producer, target, dist_info, chosen, options)


def _check_classes(pipeline: Pipeline, source: Source) -> None:
    """A mixing op's ``num_classes`` must be the source's class count (when it has one): the
    soft targets' width is the loss's, and a wrong one fails far from here (or not at all)."""
    mixing = pipeline.mixing
    classes = getattr(source, "classes", None)
    width = getattr(source, "num_classes", None) if getattr(source, "multi_label", False) else None
    if mixing is not None and width is not None and mixing.num_classes != width:
        raise SpecError(f"loader: {type(mixing).__name__}(num_classes={mixing.num_classes}) but the "
                        f"source's multi-label targets have num_classes={width}; pass "
                        f"num_classes={width}")
    if mixing is None or not classes:
        return
    if mixing.num_classes != len(classes):
        raise SpecError(f"loader: {type(mixing).__name__}(num_classes={mixing.num_classes}) but the "
                        f"source has {len(classes)} classes ({', '.join(map(str, classes[:5]))}"
                        f"{', ...' if len(classes) > 5 else ''}); pass num_classes={len(classes)} "
                        f"(e.g. fl.presets.torchvision_v2(..., num_classes={len(classes)}))")


def _draws(sampling: Any, source: Source, shuffle: bool, window: int) -> Any:
    """The epoch order's maker when it is not a permutation: ``sampling=`` checked against the
    source, or a Mix's own; None otherwise."""
    mix = source.order if isinstance(source, Mix) else None
    if sampling is None and mix is None:
        return None
    if sampling is not None and mix is not None:
        raise SpecError("loader: sampling= with a fl.Mix source: a mixture draws its own "
                        "order; set each component's proportion in fl.Mix instead")
    if shuffle:
        raise SpecError("loader: shuffle=True with " + ("a fl.Mix source" if mix else
                        "sampling=") + ": its draws are the epoch's order, new every epoch "
                        "(set_epoch); drop shuffle=True")
    if window:
        raise SpecError("loader: shard_window= orders a shuffle of shards; it does not "
                        "combine with sampling= or fl.Mix")
    if mix is not None:
        return mix
    from .order.sampling import resolve
    from .sources.base import labels_of

    return resolve(sampling, len(source), lambda: labels_of(source))


def _from_sampler(sampler: Any, sampling: Any, seed: Any, generator: Any) -> tuple[Any, Any]:
    """DataLoader's ``sampler=WeightedRandomSampler(...)`` as ``sampling=fl.Weighted(...)``
    (its weights, num_samples, replacement; its generator's seed as the loader's seed)."""
    from torch.utils.data import WeightedRandomSampler

    from .options import REFUSED
    from .order.sampling import Weighted

    if not isinstance(sampler, WeightedRandomSampler):
        raise SpecError(f"loader: sampler= is a DataLoader keyword without a meaning here (a "
                        f"{type(sampler).__name__}; only a WeightedRandomSampler is mapped): "
                        f"{REFUSED['sampler']}")
    if sampling is not None:
        raise SpecError("loader: give sampling= or sampler=WeightedRandomSampler(...), not both")
    own = getattr(sampler, "generator", None)
    if own is not None:
        if seed is not None or generator is not None:
            raise SpecError("loader: the sampler's generator gives the seed; drop seed= / "
                            "generator= (or the sampler's generator)")
        seed = int(own.initial_seed()) % (1 << 63)
    return Weighted(sampler.weights, int(sampler.num_samples), bool(sampler.replacement)), seed


def _shard_window(window: Any, shuffle: bool, source: Source) -> tuple[int, Any]:
    """``shard_window=`` checked: (window, each sample's shard number), or (0, None)."""
    if window is None:
        return 0, None
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise SpecError(f"loader: shard_window={window!r} must be an int >= 1 (shards read at "
                        "a time), or None for one global shuffle")
    if not shuffle:
        raise SpecError(f"loader: shard_window={window} orders a shuffle; pass shuffle=True "
                        "(or drop shard_window)")
    shard_ids = getattr(source, "shard_ids", None)
    if shard_ids is None:
        raise SpecError(f"loader: shard_window={window} needs a sharded source (TFRecord or "
                        f"LMDB shards, local or remote); {source!r} has no shards. Convert it "
                        "with `fastload convert`, or drop shard_window")
    return window, shard_ids()
