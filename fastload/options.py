"""``fastload.loader``'s arguments, checked once, in one place; what every producer receives.

``LoaderOptions.check()`` validates each argument (errors name it and its value) and turns the
``torch.utils.data.DataLoader`` keywords a user brings along into their fastload meaning
(``drop_last``, ``pin_memory``, ``persistent_workers``, ``timeout``, ``generator``); the
DataLoader keywords that have no meaning here are refused with the fastload equivalent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .order import sharding

BACKENDS = ("auto", "torch", "dali", "dali-native")
#: ``last_batch`` when none is given: each sample exactly once with one process ("partial"),
#: equal batch counts on every rank with several ("pad").
AUTO_LAST_BATCH = "auto"
#: Seconds a batch may take before the watchdog raises (``timeout=0``: wait forever).
DEFAULT_TIMEOUT = 600.0
#: on_error="skip": consecutive bad samples tried in place of one before giving up.
DEFAULT_SKIP_LIMIT = 16

#: DataLoader keywords without a fastload meaning -> what to do instead.
REFUSED = {
    "sampler": "fastload shards and shuffles itself: use shuffle=, seed= and dist= (a "
               "DistributedSampler is not needed; torch.distributed is read at each epoch start); "
               "weights and class balance: sampling=fl.Weighted(...) / fl.ClassBalanced(...) "
               "(a WeightedRandomSampler is mapped); mixtures: fl.Mix([(source, p), ...]); "
               "for a subset, pass a Source that holds only those samples",
    "batch_sampler": "batches come from fastload's sharding: use batch_size=, shuffle=, "
                     "last_batch= (or drop_last=)",
    "collate_fn": "images arrive stacked as one (B, 3, H, W) tensor and labels as (B,); "
                  "transform the batch in your loop",
    "worker_init_fn": "fastload's workers draw every random number from (seed, epoch, sample "
                      "position), so seeding workers changes nothing; drop it",
    "pin_memory_device": "batches land on device= (the copy to a GPU is pinned and runs on a "
                         "side stream): use device='cuda:1'",
    "in_order": "batches always arrive in order (that is what makes them reproducible)",
}


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"loader: {name}={value!r} must be an int >= {low}")
    return value


@dataclass(frozen=True)
class OnError:
    """What a producer does with a sample it cannot read or decode: ``"raise"``, or ``"skip"``
    it for the next readable one, trying at most ``limit`` consecutive samples."""

    policy: str = "raise"
    limit: int = DEFAULT_SKIP_LIMIT


@dataclass(frozen=True)
class LoaderOptions:
    """Everything ``fastload.loader`` was asked for, besides the source and the pipeline."""

    batch_size: int
    backend: str = "auto"
    shuffle: bool = False
    seed: int = 0
    num_workers: int = 0
    last_batch: str = AUTO_LAST_BATCH
    prefetch_factor: int = 2
    multiprocessing_context: Any = None
    on_error: str = "raise"
    timeout: float = DEFAULT_TIMEOUT
    pin_memory: bool = True
    persistent_workers: bool = True
    skip_limit: int = DEFAULT_SKIP_LIMIT
    ignore_index: int = 255     # a mask's value where the crop leaves the image
    min_box_size: float = 1.0   # boxes narrower or lower than this (output pixels) are dropped

    @property
    def errors(self) -> OnError:
        return OnError(self.on_error, self.skip_limit)

    @classmethod
    def check(cls, batch_size: Any, *, backend: Any = "auto", shuffle: Any = False,
              seed: Any = None, generator: Any = None, num_workers: Any = None,
              last_batch: Any = None, drop_last: Any = False, prefetch_factor: Any = 2,
              multiprocessing_context: Any = None, on_error: Any = "raise",
              timeout: Any = None, pin_memory: Any = True, persistent_workers: Any = True,
              skip_limit: Any = DEFAULT_SKIP_LIMIT, ignore_index: Any = 255,
              min_box_size: Any = 1.0, **dataloader_kwargs: Any) -> "LoaderOptions":
        """Validated options, or a SpecError naming the argument and its value."""
        for name in dataloader_kwargs:
            if name in REFUSED:
                raise SpecError(f"loader: {name}= is a DataLoader keyword without a meaning here: "
                                f"{REFUSED[name]}")
            raise SpecError(f"loader: unexpected keyword {name}=; see help(fastload.loader)")
        _int("batch_size", batch_size, 1)
        if prefetch_factor is None:
            prefetch_factor = 2  # DataLoader's value for "default"
        _int("prefetch_factor", prefetch_factor, 1)
        seed = _seed(seed, generator)
        if on_error not in ("raise", "skip"):
            raise SpecError(f"loader: on_error={on_error!r} must be 'raise' or 'skip'")
        _int("skip_limit", skip_limit, 1)
        if backend not in BACKENDS:
            raise SpecError(f"loader: backend={backend!r} must be one of {BACKENDS}")
        for name, value in (("shuffle", shuffle), ("drop_last", drop_last),
                            ("pin_memory", pin_memory), ("persistent_workers", persistent_workers)):
            if not isinstance(value, bool):
                raise SpecError(f"loader: {name}={value!r} must be True or False")
        last_batch = _last_batch(last_batch, drop_last, backend)
        if num_workers is None:
            num_workers = len(os.sched_getaffinity(0))
        _int("num_workers", num_workers, 0)
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise SpecError(f"loader: timeout={timeout!r} must be seconds >= 0 (0: no limit)")
        _int("ignore_index", ignore_index, 0)
        if ignore_index > 255:
            raise SpecError(f"loader: ignore_index={ignore_index} must be 0..255 (masks are uint8)")
        if isinstance(min_box_size, bool) or not isinstance(min_box_size, (int, float)) or \
                not min_box_size >= 0:
            raise SpecError(f"loader: min_box_size={min_box_size!r} must be pixels >= 0")
        return cls(batch_size=batch_size, backend=backend, shuffle=shuffle, seed=seed,
                   num_workers=num_workers, last_batch=last_batch,
                   prefetch_factor=prefetch_factor,
                   multiprocessing_context=multiprocessing_context, on_error=on_error,
                   timeout=float(timeout), pin_memory=pin_memory,
                   persistent_workers=persistent_workers, skip_limit=skip_limit,
                   ignore_index=ignore_index, min_box_size=float(min_box_size))


def _seed(seed: Any, generator: Any) -> int:
    """``seed=`` as given; DataLoader's ``generator=`` gives its initial seed; default 0."""
    if generator is not None:
        if seed is not None:
            raise SpecError("loader: give seed= or generator=, not both")
        initial = getattr(generator, "initial_seed", None)
        if initial is None:
            raise SpecError(f"loader: generator={generator!r} must be a torch.Generator")
        return int(initial()) % (1 << 63)
    if seed is None:
        return 0
    return _int("seed", seed, 0)


def _last_batch(last_batch: Any, drop_last: bool, backend: str) -> str:
    if drop_last:
        if last_batch not in (None, "drop"):
            raise SpecError(f"loader: drop_last=True and last_batch={last_batch!r} disagree; "
                            "give one of them")
        last_batch = "drop"
    if last_batch is None:
        return "partial" if backend == "dali-native" else AUTO_LAST_BATCH
    if last_batch not in sharding.POLICIES:
        raise SpecError(f"loader: last_batch={last_batch!r} must be one of {sharding.POLICIES} "
                        "(or None: 'partial' in one process, 'pad' across ranks)")
    if backend == "dali-native" and last_batch != "partial":
        raise SpecError(f"loader: backend='dali-native' pads shards DALI's way "
                        f"(last_batch='partial'), not last_batch={last_batch!r}; use backend='dali'")
    return last_batch
