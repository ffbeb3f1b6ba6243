"""Backend selection: one plain ``if`` in one place; DALI is imported only when asked for."""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

from ..batch import Batch, BatchTask
from ..errors import BackendUnavailable, OpNotSupported, SpecError
from ..ops.spec import Pipeline
from ..options import LoaderOptions
from ..sources.base import Source

DALI_INSTALL = "pip install 'fastload-images[dali]'  (or: pip install nvidia-dali-cuda120)"


def dali_available() -> bool:
    return importlib.util.find_spec("nvidia.dali") is not None if \
        importlib.util.find_spec("nvidia") is not None else False


def pick_backend(backend: str, device: Any) -> str:
    """``auto``: DALI when it is importable and the batches go to a GPU; else torch.
    ``dali-native`` (DALI's own readers and order) is never picked automatically."""
    if backend == "auto":
        return "dali" if device.type == "cuda" and dali_available() else "torch"
    if backend in ("dali", "dali-native") and not dali_available():
        raise BackendUnavailable(f"backend={backend!r} needs NVIDIA DALI; install it with: "
                                 f"{DALI_INSTALL}")
    return backend


class Producer(Protocol):
    """What a backend gives the Loader: batches of tasks, in order, on the target device.

    - ``batches(tasks, seed, epoch, following)``: an iterator of ``Batch`` for ``tasks`` (one
      ``BatchTask`` per batch); ``following()``, when given, returns the tasks most likely
      asked for next (the next epoch's), which a producer may start early. Closing the
      iterator early is allowed; the next call starts over from its own tasks.
    - ``resumable``: whether a call may start mid-epoch (False: DALI's own readers).
    - ``release()``: stop the workers until the next ``batches`` call (``persistent_workers=False``).
    - ``close()``: stop for good; idempotent.
    """

    resumable: bool

    def batches(self, tasks: Sequence[BatchTask], seed: int, epoch: int,
                following: Optional[Callable[[], Sequence[BatchTask]]] = None
                ) -> Iterator[Batch]: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


def check_ops(backend: str, pipeline: Pipeline) -> None:
    """OpNotSupported when ``backend`` cannot run an op of ``pipeline``: checked when the loader
    is made, never mid-epoch. ``dali`` runs the per-sample ops of ``DALI_PIXEL_OPS`` (all but
    Lambda) in DALI; ``dali-native`` draws its own crops and runs none (nor a by_epoch size);
    the batch ops run in the shared tail on every backend."""
    if backend == "torch":
        return
    if backend == "dali-native" and pipeline.schedule is not None:
        raise OpNotSupported("RandomResizedCrop with a by_epoch size: backend='dali-native' "
                             "builds one fixed DALI graph; use backend='dali' or 'torch'")
    from .dali.pixel import DALI_PIXEL_OPS

    for op in pipeline.pixel:
        name = getattr(op, "name", type(op).__name__)
        if backend == "dali-native":
            raise OpNotSupported(f"{name}: backend='dali-native' draws its own random crops, "
                                 "so fastload's per-sample draws do not apply; use "
                                 "backend='dali' or 'torch'")
        if not isinstance(op, DALI_PIXEL_OPS):
            lowered = ", ".join(cls.__name__ for cls in DALI_PIXEL_OPS)
            raise OpNotSupported(f"{name} runs only on backend='torch' (backend='dali' runs "
                                 f"{lowered}); backend={backend!r} was asked for")


def make_producer(backend: str, source: Source, pipeline: Pipeline, options: LoaderOptions, *,
                  device: Any, dist: Any) -> Producer:
    check_ops(backend, pipeline)
    if backend == "torch":
        from .torch.producer import TorchProducer

        return TorchProducer(source, pipeline, options, device=device)
    if options.on_error != "raise" and backend == "dali-native":
        raise SpecError("backend='dali-native' reads with DALI's readers and cannot skip bad "
                        "samples; use backend='dali' or 'torch' with on_error='skip'")
    if backend == "dali-native":
        from .dali.native import DaliNativeProducer

        return DaliNativeProducer(source, pipeline, options, device=device, rank=dist.rank,
                                  world=dist.world_size)
    from .dali.producer import DaliProducer

    return DaliProducer(source, pipeline, options, device=device)
