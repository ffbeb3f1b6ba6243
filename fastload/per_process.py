"""Handles (file descriptors, LMDB environments) opened lazily, once per process.

A handle opened before ``fork`` must not be used by the child (it shares the parent's file
offset or lock); one opened in a worker must not be pickled back. ``PerProcess`` opens on first
use in each process, closes the child's inherited copies, and drops handles on pickle.
"""

from __future__ import annotations

import contextlib
import gc
import os
from typing import Any, Callable, Iterator


class PerProcess:
    def __init__(self, opener: Callable[[int], Any], closer: Callable[[Any], None]) -> None:
        self._opener, self._closer = opener, closer
        self._pid = os.getpid()
        self._handles: dict[int, Any] = {}

    def get(self, key: int) -> Any:
        if self._pid != os.getpid():  # forked: close our copies of the parent's handles
            for handle in self._handles.values():
                self._closer(handle)
            self._pid, self._handles = os.getpid(), {}
        handle = self._handles.get(key)
        if handle is None:
            handle = self._handles[key] = self._opener(key)
        return handle

    def __getstate__(self) -> dict[str, Any]:
        return {"_opener": self._opener, "_closer": self._closer, "_pid": -1, "_handles": {}}


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Around code that forks child processes: ``gc.freeze()``, so a child's collector never
    examines what the parent held at the fork, garbage included (a DALI pipeline left in a
    reference cycle has a ``__del__`` that waits on threads a child does not have: a convert
    worker hung there), and never writes to those objects' pages (less copy-on-write); the
    parent's collector is as before afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
