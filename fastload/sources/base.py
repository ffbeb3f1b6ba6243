"""The source contract: ``len``, ``read(i) -> (bytes, label)``, ``describe()``, ``locate(i)``.

Those four are all a source needs. ``classes`` (class names by label) is optional: the
built-in sources have it, and tools show it when present.
"""

from __future__ import annotations

import math
import operator
import os
import zipfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Source(Protocol):
    """Encoded samples by index. Must be picklable and cheap to pickle (sent to each worker)."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> tuple[bytes, int]:
        """Encoded image bytes and integer label of sample ``index``."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: kind, location, sample and class counts."""

    def locate(self, index: int) -> str:
        """Where sample ``index`` lives (file, record, key), for error messages."""


# A source that reads over a network may also have ``prefetch(indices, ahead=None)``: the
# backends call it before reading a batch's samples, with ``ahead`` the samples the same
# process will most likely read next (to be fetched in the background meanwhile).


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

    @classmethod
    def from_arrays(cls, blob: np.ndarray, offsets: np.ndarray) -> "StringTable":
        """The table whose ``arrays()`` these are (as saved in an index file)."""
        table = cls.__new__(cls)
        table._blob, table._offsets = blob.astype(np.uint8, copy=False), offsets.astype(np.int64, copy=False)
        if len(table._offsets) == 0 or table._offsets[-1] != len(table._blob):
            raise ValueError("offsets do not match the blob")
        return table

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(blob, offsets): the whole table as two arrays."""
        return self._blob, self._offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        start, end = self._offsets[i], self._offsets[i + 1]
        return self._blob[start:end].tobytes().decode("utf-8", "surrogateescape")


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, each checked against the file before it is read: a
    plain dtype (no objects) and a header whose shape accounts for exactly the bytes stored, so
    a damaged or crafted file cannot ask for more memory than it holds. ValueError otherwise."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"unexpected member {info.filename!r}")
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                size = math.prod(shape) * dtype.itemsize
                if dtype.hasobject or fortran or f.tell() + size != info.file_size:
                    raise ValueError(f"{info.filename}: header {shape} {dtype} does not match "
                                     f"the {info.file_size} bytes stored")
                arrays[info.filename[:-4]] = np.frombuffer(f.read(size), dtype).reshape(shape)
    return arrays


def list_at(lists: tuple[np.ndarray, np.ndarray], index: int) -> list[int]:
    """Sample ``index``'s class indices from a multi-label source's (flat values, offsets)."""
    values, offsets = lists
    return values[offsets[index]:offsets[index + 1]].tolist()


def labels_of(source: Any) -> np.ndarray:
    """Every sample's label (int64): the source's ``labels`` where it keeps them in bulk (a
    folder's index, a list, WebDataset's index), else each sample read once. A multi-label
    source has no one class a sample: a SpecError says so."""
    if getattr(source, "multi_label", False):
        from ..errors import SpecError

        raise SpecError(f"{source.describe().get('kind', 'source')}: multi-label samples have "
                        "no single class to balance or stratify by; give fl.Weighted your own "
                        "weights, or split without stratify")
    bulk = getattr(source, "labels", None)
    if bulk is None:
        bulk = [source.read(i)[1] for i in range(len(source))]
    return np.asarray(bulk, dtype=np.int64)


def open_read_only(path: str) -> int:
    """A file descriptor for ``pread``s of a shard; a SourceError naming it if it cannot be
    opened."""
    from ..errors import SourceError

    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SourceError(f"{path}: cannot open: {exc.strerror or exc}") from None


class DatasetSource:
    """A map-style dataset (``len`` and ``dataset[i]``) whose items are ``(encoded image bytes,
    int label)``, as a Source. The bytes are what a JPEG/PNG file holds, not decoded pixels."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._name = type(dataset).__name__
        if len(dataset) > 0:
            self.read(0)  # a dataset of the wrong kind is named now, not in a worker

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, index: int) -> tuple[bytes, int]:
        from ..errors import SourceError

        item = self.dataset[index]
        if isinstance(item, (tuple, list)) and len(item) == 2:
            data, label = item
            if isinstance(data, (bytes, bytearray, memoryview)) or (
                    isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1):
                try:
                    return bytes(data), operator.index(label)
                except TypeError:
                    pass
        raise SourceError(f"{self.locate(index)}: a dataset given as a source must return "
                          f"(encoded image bytes, int label); this one returned {_shape(item)}. "
                          "Return the file's bytes (open(path, 'rb').read()) and the label, or "
                          "give fastload the image folder / shards themselves")

    def describe(self) -> dict[str, Any]:
        return {"kind": "dataset", "type": self._name, "samples": len(self)}

    def locate(self, index: int) -> str:
        return f"{self._name}[{index}]"


def _shape(item: Any) -> str:
    """``(PIL.Image.Image, int)``: the types of what a dataset returned."""
    def name(x: Any) -> str:
        t = type(x)
        return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"

    if isinstance(item, (tuple, list)):
        return "(" + ", ".join(name(x) for x in item) + ")"
    return name(item)
