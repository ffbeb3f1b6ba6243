"""The source contract: ``len``, ``read(i) -> (bytes, label)``, ``describe()``, ``locate(i)``."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Source(Protocol):
    """Encoded samples by index. Must be picklable and cheap to pickle (sent to each worker)."""

    classes: list[str]

    def __len__(self) -> int: ...

    def read(self, index: int) -> tuple[bytes, int]:
        """Encoded image bytes and integer label of sample ``index``."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: kind, location, sample and class counts."""

    def locate(self, index: int) -> str:
        """Where sample ``index`` lives (file, record, key), for error messages."""


class StringTable:
    """Many strings in two numpy arrays: forked workers read them without copy-on-read growth.

    A Python list of str touches each object's refcount on access, so every page of the list a
    worker reads is copied; one bytes buffer plus an offsets array is never written to.
    """

    def __init__(self, strings: list[str]) -> None:
        encoded = [s.encode("utf-8", "surrogateescape") for s in strings]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else \
            np.zeros(0, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        start, end = self._offsets[i], self._offsets[i + 1]
        return self._blob[start:end].tobytes().decode("utf-8", "surrogateescape")
