"""``fl.WebDatasetSource``: WebDataset tar shards, read by random access.

A sample is the run of consecutive members that share a key (webdataset's rule: the member
name up to the first dot of its last path component; the rest, lower-cased, is the field).
The image is the first of ``jpg``, ``jpeg``, ``png``, ``webp`` (or the field ``image_key``);
the label comes from ``cls`` / ``cls.txt`` (an integer) or a JSON member's field
(``label_key="json:label"``). Each shard's member headers are read once (``formats.tar``)
into an index file (``<shard>.fastload-index.npz``, or in ``index_dir``) checked against the
shard's size and modification time; a sample is then one ``pread`` of its image.

Shards are given as a file, a glob, a folder (its ``.tar`` files, sorted), a list, or a brace
pattern (``train-{000000..000127}.tar``). A folder that ``fastload convert --format
webdataset`` wrote is read through its manifest: sample ``i`` is sample ``i // S`` of shard
``i % S``, the same index as in the folder it was made from.

Shards at URLs (``s3://``, ``gs://``, ``https://``: one, a brace pattern, a glob, a list, or the
prefix of a converted dataset's ``manifest.json``) are read from whole local copies, as
``wids`` does: ``cache_dir`` is a node-wide ``ShardCache`` (bounded by ``cache_bytes``, least
recently used out first, downloads retried, sizes and, under a manifest, sha256s checked). The
shards are downloaded and indexed once when the source is made (the indexes stay in the cache
folder, so a later run downloads again only what was evicted); a shard evicted since is
downloaded again when a sample of it is read.

Targets beyond one class index (``backends.targets``): ``multi_label=True`` (with
``num_classes`` or ``classes``) reads several class indices from the label member (``3 7``,
``3,7`` or a JSON list); ``mask_key="seg.png"`` names the mask member; ``boxes_key=
"json:boxes"`` a JSON member's field holding ``[[x0, y0, x1, y1, label], ...]``; ``fields=
{"weight": "json:weight"}`` per-sample fields from members (a JSON field, or a member's
text). Their members' places are kept in the index; their bytes are read with the image's.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import FormatError, SourceError
from ..formats import tar
from ..formats.manifest import MANIFEST, Manifest, parse_manifest, read_manifest
from ..per_process import PerProcess
from .base import StringTable, open_read_only, read_arrays
from .remote import (DEFAULT_CACHE_BYTES, cached_shard, filesystem, glob_urls, is_url, leave,
                     read_cached, with_retries)
from .shard_cache import ShardCache
from .tfrecord import striped_order

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp")
INDEX_VERSION = 1
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext


class WebDatasetSource:
    """Samples of WebDataset ``.tar`` shards (see the module)."""

    def __init__(self, urls: Union[str, Path, Sequence[Union[str, Path]]], *,
                 image_key: Optional[str] = None, label_key: str = "cls",
                 classes: Optional[Sequence[str]] = None,
                 index_dir: Union[str, Path, None] = None,
                 storage_options: Optional[dict[str, Any]] = None,
                 cache_dir: Union[str, Path, None] = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES,
                 retries: int = 4, backoff_s: float = 0.2, multi_label: bool = False,
                 num_classes: Optional[int] = None, mask_key: Optional[str] = None,
                 boxes_key: Optional[str] = None,
                 fields: Optional[dict[str, str]] = None) -> None:
        """``index_dir``: where local shards' index files go (default: beside each shard).
        For URLs: ``storage_options`` (to fsspec), ``cache_dir`` (required), ``cache_bytes``,
        ``retries`` and ``backoff_s`` (transient errors, exponential backoff). Targets:
        ``multi_label``, ``num_classes``, ``mask_key``, ``boxes_key``, ``fields`` (see the
        module)."""
        self.image_key, self.label_key = image_key, label_key
        self._targets(multi_label, num_classes, mask_key, boxes_key, fields)
        self.storage_options = dict(storage_options or {})
        self.retries, self.backoff_s = retries, backoff_s
        self.cache: Optional[ShardCache] = None
        self._remote: list[tuple[int, str, Optional[str]]] = []  # per shard: size, version, sha256
        if _remote(urls):
            if cache_dir is None:
                raise SourceError(f"{urls}: WebDataset shards at a URL are read from whole local "
                                  "copies; pass cache_dir= (a local folder, shared by the node's "
                                  "processes) and cache_bytes= (its bound)")
            self.cache = ShardCache(cache_dir, cache_bytes)
            self._url = str(urls[0] if isinstance(urls, (list, tuple)) else urls)
            self._fs = PerProcess(self._new_fs, leave)  # one per process
            self.manifest, self.shards, self._remote = self._remote_shards(urls)
            index_dir = self.cache.folder / ".webdataset-index"
            index_dir.mkdir(exist_ok=True)
        else:
            self.manifest, shards = _shards(urls)
            self.shards = [str(s) for s in shards]
        self.index_dir = Path(index_dir) if index_dir is not None else None
        if self.manifest is not None and self.manifest.targets:  # what convert wrote
            made = self.manifest.targets
            self._targets(multi_label or made.get("multi_label", False),
                          num_classes or made.get("num_classes"),
                          mask_key or ("seg.png" if made.get("mask") else None),
                          boxes_key or ("json:boxes" if made.get("boxes") else None),
                          {**{name: f"json:{name}" for name in made.get("fields", [])},
                           **(fields or {})})
        tables = [self._index(k) for k in range(len(self.shards))]
        order = self._order([len(t["offset"]) for t in tables])
        self._shard = np.concatenate([np.full(len(t["offset"]), k, np.int32)
                                      for k, t in enumerate(tables)])[order]
        self._offset = np.concatenate([t["offset"] for t in tables])[order]
        self._size = np.concatenate([t["size"] for t in tables])[order]
        self._extra = np.concatenate([t["extra"] for t in tables])[order]  # (N, members, 2)
        if self.multi_label:  # each sample's (start, end) in the shards' concatenated labels
            bases = np.cumsum([0] + [len(t["label"]) for t in tables[:-1]])
            starts = np.concatenate([t["label_offsets"][:-1] + b for t, b in zip(tables, bases)])
            ends = np.concatenate([t["label_offsets"][1:] + b for t, b in zip(tables, bases)])
            self._label_flat = np.concatenate([t["label"] for t in tables])
            self._label_span = np.stack([starts, ends], 1)[order]
            self.labels = None  # several classes a sample
        else:
            self.labels = np.concatenate([t["label"] for t in tables])[order]
        keys = [k for t in tables for k in t["keys"]]
        self._keys = StringTable([keys[i] for i in order])
        if not len(self._offset):
            raise SourceError(f"{urls}: the shards hold no samples")
        if classes is None and self.manifest is not None:
            classes = self.manifest.classes or None  # [] when converted from unnamed labels
        self.classes = list(classes) if classes is not None else None
        if self.multi_label:
            if self.num_classes is None and self.classes is not None:
                self.num_classes = len(self.classes)
            if self.num_classes is None:
                raise SourceError(f"{urls}: multi_label=True needs num_classes= (or classes=)")
            if len(self._label_flat) and int(self._label_flat.max()) >= self.num_classes:
                raise SourceError(f"{urls}: a label is {int(self._label_flat.max())}, not below "
                                  f"num_classes={self.num_classes}")
        elif self.classes is not None and int(self.labels.max()) >= len(self.classes):
            bad = int(np.argmax(self.labels >= len(self.classes)))
            raise SourceError(f"{self.locate(bad)}: label {int(self.labels[bad])} is not one of "
                              f"the {len(self.classes)} classes given")
        self._files = PerProcess(self._open, os.close)

    def _targets(self, multi_label: bool, num_classes: Optional[int], mask_key: Optional[str],
                 boxes_key: Optional[str], fields: Optional[dict[str, str]]) -> None:
        self.multi_label, self.num_classes = bool(multi_label), num_classes
        self.mask_key, self.boxes_key = mask_key, boxes_key
        self.has_masks = mask_key is not None
        self.fields = dict(fields or {})
        # the members read with the image, besides it: the mask's, the JSON members'
        wanted = [mask_key, boxes_key, *self.fields.values()]
        self._members = sorted({w.partition(":")[0].lower() for w in wanted if w})

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
    def _index_path(self, k: int) -> Path:
        shard = self.shards[k]
        if self.cache is not None:
            size, version, _ = self._remote[k]
            name = self.cache.name(shard, size, version)
        else:
            name = Path(shard).name
        name += ".fastload-index.npz"
        return (self.index_dir / name) if self.index_dir is not None else \
            Path(shard).with_name(name)

    def _index(self, k: int) -> dict[str, Any]:
        if self.cache is not None:  # the copy's name holds the object's size and version
            size = self._remote[k][0]
            stamp = np.asarray([INDEX_VERSION, size, 0], dtype=np.int64)
        else:
            try:
                stat = os.stat(self.shards[k])
            except OSError as exc:
                raise SourceError(f"{self.shards[k]}: cannot read: {exc.strerror or exc}") from None
            size = stat.st_size
            stamp = np.asarray([INDEX_VERSION, stat.st_size, stat.st_mtime_ns], dtype=np.int64)
        path = self._index_path(k)
        found = self._saved_index(path, stamp, size)
        if found is not None:
            return found
        # no index, another one, or one that does not add up (a remote shard: downloaded now)
        table = self._scan(self.shards[k] if self.cache is None else str(self._local(k)))
        self._save_index(path, stamp, table)
        return table

    def _saved_index(self, path: Path, stamp: np.ndarray, size: int) -> Optional[dict[str, Any]]:
        """The index file at ``path`` if it is this shard's (stamp and fields) and adds up."""
        with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
            f = read_arrays(path)  # checked against the file before anything is allocated
            if np.array_equal(f["stamp"], stamp) and str(f["fields"]) == self._index_fields():
                keys = StringTable.from_arrays(f["keys_blob"], f["keys_offsets"])
                offset, sizes, label = f["offset"], f["size"], f["label"]
                extra, spans = f["extra"], f["label_offsets"]
                count = len(spans) - 1 if self.multi_label else len(label)
                if (len(offset) == len(sizes) == count == len(keys) == len(extra)
                        and extra.shape[1:] == (len(self._members), 2)
                        and not np.any(offset < 0) and not np.any(sizes < 0)
                        and not np.any(offset + sizes > size)
                        and not np.any(extra[..., 0] + extra[..., 1] > size)
                        and not np.any(label < -1)):
                    return {"offset": offset, "size": sizes, "label": label, "extra": extra,
                            "label_offsets": spans, "keys": [keys[i] for i in range(len(keys))]}
        return None

    def _index_fields(self) -> str:
        """What an index file was made for (another image, label or target key: index again)."""
        return f"{self.image_key}|{self.label_key}|{int(self.multi_label)}|{','.join(self._members)}"

    def _save_index(self, path: Path, stamp: np.ndarray, table: dict[str, Any]) -> None:
        fields = self._index_fields()
        blob, offsets = StringTable(table["keys"]).arrays()
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:  # a folder that cannot be written: index again next time
            with open(tmp, "wb") as out:
                np.savez(out, stamp=stamp, fields=np.asarray(fields), offset=table["offset"],
                         size=table["size"], label=table["label"], extra=table["extra"],
                         label_offsets=table["label_offsets"], keys_blob=blob,
                         keys_offsets=offsets)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    # --- shards at URLs -----------------------------------------------------------------------
    def _new_fs(self, _: int = 0) -> Any:
        return filesystem(self._url, self.storage_options)

    def _call(self, what: str, fetch: Any) -> Any:
        """``fetch(fs)`` on this process's filesystem, with this source's retries."""
        return with_retries(what, lambda: fetch(self._fs.get(0)), self.retries, self.backoff_s)

    def _remote_shards(self, urls: Any) -> tuple[Optional[Manifest], list[str],
                                                 list[tuple[int, str, Optional[str]]]]:
        """(manifest, shard URLs, each shard's (size, version, sha256))."""
        manifest = None
        if isinstance(urls, (list, tuple)):
            names = [str(u) for u in urls]
        else:
            text = str(urls).rstrip("/")
            if "{" in text:
                names = expand_braces(text)
            elif any(c in text for c in "*?["):
                names = self._call(text, lambda fs: glob_urls(fs, text))
                if not names:
                    raise SourceError(f"{text}: the glob matches no objects")
            elif text.endswith(".tar"):
                names = [text]
            else:  # the prefix of a converted dataset
                where = f"{text}/{MANIFEST}"
                raw = self._call(where, lambda fs: fs.cat_file(where))
                manifest = parse_manifest(raw.decode("utf-8", "replace"), where)
                if manifest.format != "webdataset":
                    raise SourceError(f"{text}: {MANIFEST} describes {manifest.format!r} shards, "
                                      "not webdataset")
                version = hashlib.sha256(raw).hexdigest()[:16]
                names = [f"{text}/{s.file}" for s in manifest.shards]
                return manifest, names, [(s.bytes, version, s.sha256) for s in manifest.shards]
        found = []
        for name in names:
            info = self._call(name, lambda fs: fs.info(name))
            version = str(info.get("ETag") or info.get("etag") or info.get("mtime") or "")
            found.append((int(info["size"]), version.strip('"'), None))
        return manifest, names, found

    def _local(self, k: int) -> Path:
        """The local copy of shard ``k``, downloaded now if it is not in the cache."""
        assert self.cache is not None
        size, version, sha256 = self._remote[k]
        return cached_shard(self.cache, self.shards[k], size, version, self._call, sha256)

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
            offset, size, label, counts, extra = [], [], [], [0], []
            for key, parts in samples:
                image = self._image(shard, key, parts)
                offset.append(image.offset)
                size.append(image.size)
                found = self._label(f, shard, key, parts)
                label.extend(found if self.multi_label else [found])
                counts.append(counts[-1] + (len(found) if self.multi_label else 1))
                extra.append([(parts[m].offset, parts[m].size) if m in parts else (-1, 0)
                              for m in self._members])
                missing = [m for m in self._members if m not in parts]
                if missing:
                    raise FormatError(f"{shard}: sample {key!r} has no {missing[0]!r} member "
                                      f"(it has {sorted(parts)})")
        return {"offset": np.asarray(offset, np.int64), "size": np.asarray(size, np.int64),
                "label": np.asarray(label, np.int64),
                "label_offsets": np.asarray(counts, np.int64),
                "extra": np.asarray(extra, np.int64).reshape(len(samples), len(self._members), 2),
                "keys": [k for k, _ in samples]}

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

    def _label(self, f: Any, shard: str, key: str, parts: dict[str, tar.Member]) -> Any:
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
        if self.multi_label:  # a JSON list, or indices separated by spaces or commas
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = json.loads(value) if value.startswith("[") else value
            items = value if isinstance(value, list) else \
                str(value).replace(",", " ").split() if not isinstance(value, int) else [value]
            if not all(_is_index(v) for v in items):
                raise FormatError(f"{shard}: sample {key!r}: label {value!r:.40} is not a list "
                                  "of class indices (integers >= 0)")
            return [int(v) for v in items]
        if value in (-1, "-1"):
            return -1  # no image-level label (a segmentation or detection sample)
        if not _is_index(value):
            raise FormatError(f"{shard}: sample {key!r}: label {value!r:.40} is not a class "
                              "index (an integer >= 0, or -1 for none)")
        return int(value)

    # --- the source contract ------------------------------------------------------------------
    def _open(self, shard: int) -> int:
        return open_read_only(self.shards[shard])

    def _pread(self, shard: int, size: int, offset: int) -> bytes:
        if self.cache is None:
            return os.pread(self._files.get(shard), size, offset)
        return read_cached(lambda: self._local(shard), [(size, offset)])[0]

    def __len__(self) -> int:
        return len(self._offset)

    def locate(self, index: int) -> str:
        return f"{self.shards[self._shard[index]]} key {self._keys[index]!r} (sample {index})"

    def read(self, index: int) -> Any:
        """(bytes, label), or (bytes, label, extras) with target keys (see the module)."""
        shard = int(self._shard[index])
        data = self._member(index, shard, int(self._offset[index]), int(self._size[index]))
        if self.multi_label:
            start, end = self._label_span[index]
            label: Any = self._label_flat[start:end].tolist()
        else:
            label = int(self.labels[index])
        if not self._members:
            return data, label
        members = {m: self._member(index, shard, int(o), int(n))
                   for m, (o, n) in zip(self._members, self._extra[index])}
        parsed: dict[str, Any] = {}  # each JSON member parsed once, whatever reads from it
        extras: dict[str, Any] = {}
        if self.mask_key:
            extras["mask"] = members[self.mask_key.lower()]
        if self.boxes_key:
            boxes = self._value(index, members, parsed, self.boxes_key)
            try:
                extras["boxes"] = np.asarray([b[:4] for b in boxes], np.float32).reshape(-1, 4)
                extras["box_labels"] = np.asarray([b[4] for b in boxes], np.int64)
            except (TypeError, ValueError, IndexError):
                raise FormatError(f"{self.locate(index)}: {self.boxes_key} is {boxes!r:.80}, not "
                                  "[[x0, y0, x1, y1, label], ...]") from None
        for name, where in self.fields.items():
            extras[name] = self._value(index, members, parsed, where)
        return data, label, extras

    def _member(self, index: int, shard: int, offset: int, size: int) -> bytes:
        data = self._pread(shard, size, offset)
        if len(data) != size:
            raise SourceError(f"{self.locate(index)}: got {len(data)} of {size} bytes: the shard "
                              "changed after indexing")
        return data

    def _value(self, index: int, members: dict[str, bytes], parsed: dict[str, Any],
               where: str) -> Any:
        """A JSON member's field (``json:boxes``; ``parsed`` keeps the sample's parsed JSON
        members), or a member's text (``txt``)."""
        member, _, field = where.partition(":")
        name = member.lower()
        if not field:
            return members[name].decode("utf-8", "replace").strip()
        try:
            if name not in parsed:
                parsed[name] = json.loads(members[name])
            return parsed[name][field]
        except (ValueError, KeyError, TypeError):
            raise FormatError(f"{self.locate(index)}: its {member!r} member has no field "
                              f"{field!r}") from None

    def shard_ids(self) -> np.ndarray:
        """Each sample's shard number (for the shard-aware order)."""
        return self._shard

    def describe(self) -> dict[str, Any]:
        return {"kind": "webdataset", "shards": len(self.shards), "samples": len(self),
                "classes": len(self.classes) if self.classes is not None else None}

    def __repr__(self) -> str:
        return f"WebDatasetSource(shards={len(self.shards)}, samples={len(self)})"


def _is_index(value: Any) -> bool:
    return not isinstance(value, bool) and (
        (isinstance(value, int) and value >= 0) or (isinstance(value, str) and value.isdigit()))


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


def _remote(urls: Any) -> bool:
    if isinstance(urls, (list, tuple)):
        remote = [is_url(str(u)) for u in urls]
        if any(remote) and not all(remote):
            raise SourceError("WebDatasetSource: give local shards or URLs, not both")
        return bool(remote) and remote[0]
    return is_url(str(urls))


def _shards(urls: Any) -> tuple[Optional[Manifest], list[Path]]:
    manifest = None
    if isinstance(urls, (list, tuple)):
        names = [str(u) for u in urls]
    else:
        text = str(urls)
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
