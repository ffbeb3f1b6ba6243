"""TFRecord shards of tf.train.Example, read by random access through their ``.idx`` files."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import FormatError, SourceError
from ..formats import protowire
from ..formats import tfrecord
from ..formats.manifest import MANIFEST, Manifest, read_manifest
from ..per_process import PerProcess
from .base import open_read_only

try:
    from ..formats import _wire
except ImportError:  # pragma: no cover - the C extension is optional (protowire does the same)
    _wire = None

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"


class TFRecordSource:
    """Samples from TFRecord shards given as a file, a glob, a folder or a folder's manifest.

    With ``manifest.json`` (what ``fastload convert`` writes) sample ``i`` is record ``i // S``
    of shard ``i % S``; otherwise the shards' records in order, shards sorted by name. Every
    shard needs its index ``<shard>.idx``: a missing one is an error that says how to build it,
    or is built and written when ``build_missing_index=True``.
    """

    def __init__(self, path: Union[str, Path, Sequence[Union[str, Path]]], *,
                 image_key: str = IMAGE_KEY, label_key: str = LABEL_KEY,
                 verify_crc: bool = True, build_missing_index: bool = False) -> None:
        self.image_key, self.label_key, self.verify_crc = image_key, label_key, verify_crc
        self._keys = (image_key.encode("utf-8"), label_key.encode("utf-8"))
        self.manifest, shards = _resolve(path)
        self.shards = [str(s) for s in shards]
        self.classes = list(self.manifest.classes) if self.manifest else []
        rows = [_load_index(s, build_missing_index) for s in shards]
        self._shard, self._record, self._offset, self._length = record_table(
            self.shards, rows, self.manifest)
        if not len(self._offset):
            raise SourceError(f"{path}: the TFRecord shards hold no records")
        self._files = PerProcess(self._open, os.close)

    def _open(self, shard: int) -> int:
        return open_read_only(self.shards[shard])

    def __len__(self) -> int:
        return len(self._offset)

    def locate(self, index: int) -> str:
        return (f"{self.shards[self._shard[index]]} record {self._record[index]} "
                f"(offset {self._offset[index]}, sample {index})")

    def read_record(self, index: int) -> bytes:
        """The verified payload (a serialized Example) of sample ``index``."""
        fd = self._files.get(int(self._shard[index]))
        length, offset = int(self._length[index]), int(self._offset[index])
        return checked_record(os.pread(fd, length, offset), length, self.locate(index),
                              self.verify_crc)

    def read(self, index: int) -> tuple[bytes, int]:
        return image_and_label(self.read_record(index), self._keys, self.locate(index))

    def shard_ids(self) -> np.ndarray:
        """Each sample's shard number (for the shard-aware order)."""
        return self._shard

    def describe(self) -> dict[str, Any]:
        return {"kind": "tfrecord", "shards": len(self.shards), "samples": len(self),
                "classes": len(self.classes), "manifest": self.manifest is not None}

    def __repr__(self) -> str:
        return f"TFRecordSource(shards={len(self.shards)}, samples={len(self)})"


def record_table(shards: Sequence[str], rows: Sequence[np.ndarray], manifest: Optional[Manifest]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per global sample: (shard number, record number, offset, length), from each shard's index
    rows; striped (sample i in shard i % S) with a manifest, else the shards back to back."""
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    if manifest is not None:
        for shard, info, count in zip(shards, manifest.shards, counts):
            if count != info.records:
                raise FormatError(f"{shard}: index has {count} records, {MANIFEST} says "
                                  f"{info.records}; the shard or its index is stale")
    shard = np.concatenate([np.full(c, k, np.int32) for k, c in enumerate(counts)]) \
        if len(counts) else np.zeros(0, np.int32)
    record = np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) \
        if len(counts) else np.zeros(0, np.int64)
    table = np.concatenate(rows) if len(rows) else np.zeros((0, 2), np.int64)
    if manifest is not None and manifest.layout == "striped":
        order = striped_order(counts)
        shard, record, table = shard[order], record[order], table[order]
    return shard, record, table[:, 0].copy(), table[:, 1].copy()


def checked_record(buf: bytes, length: int, where: str, verify: bool) -> bytes:
    """A framed record as read (``length`` bytes expected) -> its verified payload."""
    if len(buf) != length:
        raise FormatError(f"{where}: got {len(buf)} of its {length} bytes: the shard is shorter "
                          "than its index says (truncated or replaced after indexing)")
    return tfrecord.unframe(buf, where, verify=verify)


def image_and_label(record: bytes, keys: tuple[bytes, bytes], where: str) -> tuple[bytes, int]:
    """The image bytes and label of a serialized Example: by the C reader when it is built and
    the record is plain; else by protowire, whose FormatError names ``where``."""
    if _wire is not None:
        found = _wire.example_features(record, keys[0], keys[1])
        if found is not None:
            offset, length, label = found
            return record[offset:offset + length], label
    image_key, label_key = (k.decode("utf-8") for k in keys)
    try:
        example = protowire.decode_example(record, frozenset((image_key, label_key)))
    except FormatError as exc:
        raise FormatError(f"{where}: malformed Example: {exc}") from None
    image, label = example.get(image_key), example.get(label_key)
    if not image or not label:
        found_keys = sorted(protowire.decode_example(record))
        raise FormatError(f"{where}: Example lacks {image_key!r} or {label_key!r} (has "
                          f"{found_keys})")
    if not isinstance(image[0], bytes) or not isinstance(label[0], int):
        raise FormatError(f"{where}: {image_key!r} must be a BytesList and {label_key!r} an "
                          f"Int64List; found a list of {type(image[0]).__name__} and of "
                          f"{type(label[0]).__name__}")
    return image[0], label[0]


def striped_order(counts: np.ndarray) -> np.ndarray:
    """Positions in the shard-concatenated table of global samples 0..N-1 (i -> shard i % S)."""
    total, shards = int(counts.sum()), len(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    i = np.arange(total, dtype=np.int64)
    return starts[i % shards] + i // shards


def _resolve(path: Any) -> tuple[Optional[Manifest], list[Path]]:
    if isinstance(path, (list, tuple)):
        return None, [Path(p) for p in path]
    text = str(path)
    p = Path(text)
    if p.name == MANIFEST:
        p = p.parent
    if p.is_dir():
        if (p / MANIFEST).exists():
            manifest = read_manifest(p)
            if manifest.format != "tfrecord":
                raise SourceError(f"{p}: {MANIFEST} describes {manifest.format!r} shards, not tfrecord")
            return manifest, [p / s.file for s in manifest.shards]
        found = sorted(q for q in p.iterdir() if _is_shard(q))
        if not found:
            raise SourceError(f"{p}: no *.tfrecord files in this folder")
        return None, found
    if any(c in text for c in "*?["):
        found = sorted(Path(q) for q in glob.glob(text) if _is_shard(Path(q)))
        if not found:
            raise SourceError(f"{text}: the glob matches no TFRecord files")
        return None, found
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    return None, [p]


def _is_shard(p: Path) -> bool:
    return p.is_file() and ".tfrecord" in p.name and not p.name.endswith((".idx", ".tmp")) \
        and not p.name.startswith(".")


def _load_index(shard: Path, build: bool) -> np.ndarray:
    idx = tfrecord.index_path(shard)
    if not shard.exists():
        raise SourceError(f"{shard}: no such TFRecord file")
    if idx.exists():
        return tfrecord.read_index(idx, shard)
    if not build:
        raise SourceError(f"{shard}: no index file {idx.name}; create it with `fastload index "
                          f"{shard}`, or give fl.loader the source "
                          f"fastload.sources.TFRecordSource(path, build_missing_index=True))")
    rows = tfrecord.scan(shard)
    tfrecord.write_index(rows, idx)
    return rows
