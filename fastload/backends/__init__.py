"""Backend selection: one plain ``if`` in one place; DALI is imported only when asked for."""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import BackendUnavailable, SpecError
from ..sources.base import Source
from ..spec import Pipeline

DALI_INSTALL = "pip install 'fastload[dali]'  (or: pip install nvidia-dali-cuda120)"


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


def make_producer(backend: str, source: Source, pipeline: Pipeline, *, device: Any,
                  batch_size: int, num_workers: int, prefetch_factor: int,
                  multiprocessing_context: Any, shuffle: bool, seed: int, dist: Any,
                  on_error: str) -> Any:
    if backend == "torch":
        from .torch_backend import TorchProducer

        return TorchProducer(source, pipeline, device=device, batch_size=batch_size,
                             num_workers=num_workers,
                             prefetch_factor=prefetch_factor,
                             multiprocessing_context=multiprocessing_context, on_error=on_error)
    if backend == "dali-native":
        from .dali_native import DaliNativeProducer

        if on_error != "raise":
            raise SpecError("backend='dali-native' reads with DALI's readers and cannot skip bad "
                            "samples; use backend='dali' or 'torch' with on_error='skip'")
        return DaliNativeProducer(source, pipeline, device=device, batch_size=batch_size,
                                  num_workers=num_workers, prefetch_factor=prefetch_factor,
                                  shuffle=shuffle, seed=seed, rank=dist.rank, world=dist.world_size)
    from .dali_backend import DaliProducer

    return DaliProducer(source, pipeline, device=device, batch_size=batch_size,
                        num_workers=num_workers, prefetch_factor=prefetch_factor,
                        on_error=on_error)
