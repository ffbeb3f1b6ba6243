"""The private parts of torch the torch backend relies on, each behind one small function.

``tests/test_torch_internals.py`` checks every one against the installed torch, so a torch
release that renames or removes one fails loudly there rather than quietly here.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import torch


def storage_uses(tensor: torch.Tensor) -> Optional[int]:
    """How many tensors, views and numpy aliases share ``tensor``'s memory (None: unknown)."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    return None if use_count is None else use_count(tensor.untyped_storage()._cdata)


def new_shared_storage(nbytes: int) -> torch.UntypedStorage:
    """A storage allocated straight in shared memory (no copy when a worker sends it)."""
    return torch.UntypedStorage._new_shared(nbytes)


def helper_threads(iterator: Any) -> list[threading.Thread]:
    """A DataLoader iterator's threads in this process: index-queue feeders, pin-memory."""
    threads = [getattr(q, "_thread", None) for q in getattr(iterator, "_index_queues", ())]
    threads.append(getattr(iterator, "_pin_memory_thread", None))
    return [t for t in threads if t is not None]


def awaited_worker(iterator: Any) -> Optional[tuple[int, Optional[int]]]:
    """(worker id, pid) of the worker that owes the batch the iterator waits for next."""
    info = getattr(iterator, "_task_info", {}).get(getattr(iterator, "_rcvd_idx", None))
    if not info:
        return None
    worker = info[0]
    workers = getattr(iterator, "_workers", ())
    pid = workers[worker].pid if worker < len(workers) else None
    return worker, pid


def is_timeout(exc: BaseException) -> bool:
    """Is this the DataLoader's own ``timeout`` error?"""
    return isinstance(exc, RuntimeError) and "DataLoader timed out after" in str(exc)


def worker_failure(exc: BaseException) -> bool:
    """Is this the DataLoader's timeout, or its report of a worker that died?"""
    return is_timeout(exc) or (isinstance(exc, RuntimeError)
                               and "DataLoader worker (pid" in str(exc))


def warn_workers_once(loader: torch.utils.data.DataLoader) -> None:
    """torch warns about a worker count above the CPUs when the DataLoader is made and again at
    every ``iter()``; keep the first. The check is switched off on this one object (no warning
    filters: those are process-wide, and swapping them races with other threads)."""
    if hasattr(loader, "check_worker_number_rationality"):
        loader.check_worker_number_rationality = lambda: None  # type: ignore[method-assign]


def shutdown_workers(loader: torch.utils.data.DataLoader, iterator: Any = None,
                     stuck: Optional[int] = None) -> None:
    """Stop a DataLoader's worker processes now; its next ``iter()`` starts fresh ones.
    ``stuck``: a worker id to kill first (it would not answer the shutdown request)."""
    from torch.utils.data._utils import signal_handling

    for it in (iterator, getattr(loader, "_iterator", None)):
        workers = list(getattr(it, "_workers", ()))
        if getattr(it, "_worker_pids_set", False):
            # stop watching the workers first: torch's SIGCHLD handler would report the kill
            signal_handling._remove_worker_pids(id(it))
            it._worker_pids_set = False
        if stuck is not None and stuck < len(workers) and workers[stuck].is_alive():
            workers[stuck].kill()
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    if hasattr(loader, "_iterator"):
        loader._iterator = None
