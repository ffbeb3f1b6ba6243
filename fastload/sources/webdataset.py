"""``fl.WebDatasetSource``: WebDataset tar shards, read by random access.

A sample is the run of consecutive members that share a key (webdataset's rule: the member
name up to the first dot of its last path component; the rest, lower-cased, is the field).
The image is the first of ``jpg``, ``jpeg``, ``png``, ``webp`` (or the field ``image_key``);
the label comes from ``cls`` / ``cls.txt`` (an integer) or a JSON member's field
(``label_key="json:label"``). Each shard's member headers are read once (``formats.tar``)
into an index file (``<shard>.fastload-index.npz``, or in ``index_dir``) checked against the
shard's size and modification time; a sample is then one ``pread`` of its image.

Shards are given as a file, a glob, a folder (its ``.tar`` files, sorted), a list, or a brace
pattern (``train-{000000..000127}.tar``). Local files; a URL is refused with what to do. A
folder that ``fastload convert --format webdataset`` wrote is read through its manifest:
sample ``i`` is sample ``i // S`` of shard ``i % S``, the same index as in the folder it was
made from.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import FormatError, SourceError
from ..formats import tar
from ..formats.manifest import MANIFEST, Manifest, read_manifest
from ..per_process import PerProcess
from .base import StringTable, open_read_only, read_arrays
from .tfrecord import striped_order

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp")
INDEX_VERSION = 1
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext


class WebDatasetSource:
    """Samples of WebDataset ``.tar`` shards (see the module)."""

    def __init__(self, urls: Union[str, Path, Sequence[Union[str, Path]]], *,
                 image_key: Optional[str] = None, label_key: str = "cls",
                 classes: Optional[Sequence[str]] = None,
                 index_dir: Union[str, Path, None] = None) -> None:
        self.image_key, self.label_key = image_key, label_key
        self.manifest, shards = _shards(urls)
        self.shards = [str(s) for s in shards]
        self.index_dir = Path(index_dir) if index_dir is not None else None
        tables = [self._index(k) for k in range(len(self.shards))]
        order = self._order([len(t["offset"]) for t in tables])
        self._shard = np.concatenate([np.full(len(t["offset"]), k, np.int32)
                                      for k, t in enumerate(tables)])[order]
        self._offset = np.concatenate([t["offset"] for t in tables])[order]
        self._size = np.concatenate([t["size"] for t in tables])[order]
        self.labels = np.concatenate([t["label"] for t in tables])[order]
        keys = [k for t in tables for k in t["keys"]]
        self._keys = StringTable([keys[i] for i in order])
        if not len(self._offset):
            raise SourceError(f"{urls}: the shards hold no samples")
        if classes is None and self.manifest is not None:
            classes = self.manifest.classes
        self.classes = list(classes) if classes is not None else None
        if self.classes is not None and int(self.labels.max()) >= len(self.classes):
            bad = int(np.argmax(self.labels >= len(self.classes)))
            raise SourceError(f"{self.locate(bad)}: label {int(self.labels[bad])} is not one of "
                              f"the {len(self.classes)} classes given")
        self._files = PerProcess(self._open, os.close)

    def _order(self, counts: list[int]) -> np.ndarray:
        """Global sample -> place in the shards' concatenation: striped under a manifest."""
        if self.manifest is None:
            return np.arange(sum(counts), dtype=np.int64)
        for shard, info, count in zip(self.shards, self.manifest.shards, counts):
            if count != info.records:
                raise FormatError(f"{shard}: holds {count} samples, {MANIFEST} says "
                                  f"{info.records}; the shard was changed after conversion")
        return striped_order(np.asarray(counts, dtype=np.int64))

    # --- the index ----------------------------------------------------------------------------
    def _index_path(self, shard: str) -> Path:
        name = Path(shard).name + ".fastload-index.npz"
        return (self.index_dir / name) if self.index_dir is not None else \
            Path(shard).with_name(name)

    def _index(self, k: int) -> dict[str, Any]:
        shard = self.shards[k]
        try:
            stat = os.stat(shard)
        except OSError as exc:
            raise SourceError(f"{shard}: cannot read: {exc.strerror or exc}") from None
        stamp = np.asarray([INDEX_VERSION, stat.st_size, stat.st_mtime_ns], dtype=np.int64)
        fields = f"{self.image_key}|{self.label_key}"
        path = self._index_path(shard)
        with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
            f = read_arrays(path)  # checked against the file before anything is allocated
            if np.array_equal(f["stamp"], stamp) and str(f["fields"]) == fields:
                keys = StringTable.from_arrays(f["keys_blob"], f["keys_offsets"])
                offset, size, label = f["offset"], f["size"], f["label"]
                if (len(offset) == len(size) == len(label) == len(keys)
                        and not np.any(offset < 0) and not np.any(size < 0)
                        and not np.any(offset + size > stat.st_size)
                        and not np.any(label < 0)):
                    return {"offset": offset, "size": size, "label": label,
                            "keys": [keys[i] for i in range(len(keys))]}
        table = self._scan(shard)  # no index, another one, or one that does not add up
        blob, offsets = StringTable(table["keys"]).arrays()
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:  # a folder that cannot be written: index again next time
            with open(tmp, "wb") as out:
                np.savez(out, stamp=stamp, fields=np.asarray(fields), offset=table["offset"],
                         size=table["size"], label=table["label"], keys_blob=blob,
                         keys_offsets=offsets)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return table

    def _scan(self, shard: str) -> dict[str, Any]:
        """One pass over the shard's headers: each sample's image (offset, size) and label."""
        samples: list[tuple[str, dict[str, tar.Member]]] = []
        with open(shard, "rb") as f:
            for member in tar.members(f, shard):
                match = _KEY.match(member.name)
                if match is None:
                    continue  # no field: a folder entry, a README
                key, field = match.group(1), match.group(2).lower()
                if not samples or samples[-1][0] != key:
                    samples.append((key, {}))
                parts = samples[-1][1]
                if field in parts:
                    raise FormatError(f"{shard}: sample {key!r} has two {field!r} members")
                parts[field] = member
            offset, size, label = [], [], []
            for key, parts in samples:
                image = self._image(shard, key, parts)
                offset.append(image.offset)
                size.append(image.size)
                label.append(self._label(f, shard, key, parts))
        return {"offset": np.asarray(offset, np.int64), "size": np.asarray(size, np.int64),
                "label": np.asarray(label, np.int64), "keys": [k for k, _ in samples]}

    def _image(self, shard: str, key: str, parts: dict[str, tar.Member]) -> tar.Member:
        if self.image_key is not None:
            if self.image_key not in parts:
                raise FormatError(f"{shard}: sample {key!r} has no {self.image_key!r} member "
                                  f"(it has {sorted(parts)})")
            return parts[self.image_key]
        found = [field for field in IMAGE_FIELDS if field in parts]
        if not found:
            raise FormatError(f"{shard}: sample {key!r} has no image member ({', '.join(IMAGE_FIELDS)}"
                              f"; it has {sorted(parts)}); name one with image_key=")
        if len(found) > 1:
            raise FormatError(f"{shard}: sample {key!r} has two images ({found}); choose one "
                              "with image_key=")
        return parts[found[0]]

    def _label(self, f: Any, shard: str, key: str, parts: dict[str, tar.Member]) -> int:
        source, _, field = self.label_key.partition(":")
        names = [source] if source != "cls" else ["cls", "cls.txt"]
        member = next((parts[n] for n in names if n in parts), None)
        if member is None:
            raise FormatError(f"{shard}: sample {key!r} has no {' or '.join(names)} member for "
                              f"its label (it has {sorted(parts)}); set label_key=")
        f.seek(member.offset)
        text = f.read(member.size).decode("utf-8", "replace")
        value: Any = text.strip()
        if field:
            try:
                value = json.loads(text)[field]
            except (ValueError, KeyError, TypeError):
                raise FormatError(f"{shard}: sample {key!r}: its {source!r} member has no "
                                  f"field {field!r}") from None
        if isinstance(value, bool) or not (isinstance(value, int) or
                                           (isinstance(value, str) and value.isdigit())):
            raise FormatError(f"{shard}: sample {key!r}: label {value!r:.40} is not a class "
                              "index (an integer >= 0)")
        return int(value)

    # --- the source contract ------------------------------------------------------------------
    def _open(self, shard: int) -> int:
        return open_read_only(self.shards[shard])

    def __len__(self) -> int:
        return len(self._offset)

    def locate(self, index: int) -> str:
        return f"{self.shards[self._shard[index]]} key {self._keys[index]!r} (sample {index})"

    def read(self, index: int) -> tuple[bytes, int]:
        fd = self._files.get(int(self._shard[index]))
        size = int(self._size[index])
        data = os.pread(fd, size, int(self._offset[index]))
        if len(data) != size:
            raise SourceError(f"{self.locate(index)}: got {len(data)} of {size} bytes: the shard "
                              "changed after indexing")
        return data, int(self.labels[index])

    def shard_ids(self) -> np.ndarray:
        """Each sample's shard number (for the shard-aware order)."""
        return self._shard

    def describe(self) -> dict[str, Any]:
        return {"kind": "webdataset", "shards": len(self.shards), "samples": len(self),
                "classes": len(self.classes) if self.classes is not None else None}

    def __repr__(self) -> str:
        return f"WebDatasetSource(shards={len(self.shards)}, samples={len(self)})"


def expand_braces(pattern: str) -> list[str]:
    """webdataset's brace notation: ``a-{000..002}.tar`` -> a-000.tar, a-001.tar, a-002.tar
    (zero padding kept); ``{a,b}`` alternatives; several braces multiply."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(1), pattern[match.end():]
    span = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if span:
        lo, hi = span.group(1), span.group(2)
        items = [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    else:
        items = body.split(",")
    return [name for item in items for name in expand_braces(head + item + tail)]


def _shards(urls: Any) -> tuple[Optional[Manifest], list[Path]]:
    manifest = None
    if isinstance(urls, (list, tuple)):
        names = [str(u) for u in urls]
    else:
        text = str(urls)
        if "://" in text and not text.startswith("file://"):
            raise SourceError(f"{text}: WebDataset shards at a URL are not read yet; copy the "
                              "shards to a local or mounted disk and give their path")
        path = Path(text)
        if path.name == MANIFEST:
            path = path.parent
        if path.is_dir() and (path / MANIFEST).exists():
            manifest = read_manifest(path)
            if manifest.format != "webdataset":
                raise SourceError(f"{path}: {MANIFEST} describes {manifest.format!r} shards, "
                                  "not webdataset")
            names = [str(path / s.file) for s in manifest.shards]
        elif path.is_dir():
            names = sorted(str(p) for p in path.iterdir() if p.name.endswith(".tar"))
            if not names:
                raise SourceError(f"{path}: no .tar shards in this folder")
        elif "{" in text:
            names = expand_braces(text)
        elif any(c in text for c in "*?["):
            names = sorted(glob.glob(text))
            if not names:
                raise SourceError(f"{text}: the glob matches no files")
        else:
            names = [text]
    for name in names:
        if not Path(name).is_file():
            raise SourceError(f"{name}: no such shard")
    return manifest, [Path(n) for n in names]
