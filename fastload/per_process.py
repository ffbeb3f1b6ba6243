"""Handles (file descriptors, LMDB environments) opened lazily, once per process.

A handle opened before ``fork`` must not be used by the child (it shares the parent's file
offset or lock); one opened in a worker must not be pickled back. ``PerProcess`` opens on first
use in each process, closes the child's inherited copies, and drops handles on pickle.
"""

from __future__ import annotations

import os
from typing import Any, Callable


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
