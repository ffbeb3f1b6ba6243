"""TFRecord shards written by ``fastload convert``, read from object storage (``s3://``,
``gs://``, ``https://``, any fsspec URL) by byte-range requests.

The manifest and every shard's index are read once, when the source is made; after that each
sample is one range request (its record), verified by its CRCs as a local read is. A batch's
records are fetched together (``prefetch``: fsspec's ``cat_ranges``, concurrent requests on
one connection pool per process), and the next batch's in a background thread while this one
decodes, so the network's latency is hidden rather than paid once per batch. Transient
failures are retried with exponential backoff; then the error names the object and the byte
range. Each process makes its own filesystem object (never shared across a
fork); credentials and endpoints come from ``storage_options`` (passed to fsspec as given) or
the filesystem's own defaults. With ``cache_dir``, whole shards are downloaded once into a
node-wide local cache (``shard_cache.ShardCache``) and records are read from there instead.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from ..errors import (BackendUnavailable, FastloadError, FormatError, SourceError,
                      SourceUnavailable)
from ..formats import tfrecord
from ..formats.manifest import MANIFEST, parse_manifest
from ..per_process import PerProcess
from .shard_cache import ShardCache, write_error
from .tfrecord import IMAGE_KEY, LABEL_KEY, checked_record, image_and_label, record_table

DEFAULT_CACHE_BYTES = 16 * 2**30
CHUNK = 4 << 20  # bytes per read when a whole shard is downloaded
REMOTE_INSTALL = "pip install 'fastload-images[remote]'  (fsspec + s3fs; gcsfs for gs://)"


def is_url(text: str) -> bool:
    """``scheme://...`` other than a local ``file://`` path."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme not in ("file", "local")


def filesystem(url: str, storage_options: Optional[dict[str, Any]] = None) -> Any:
    """A new fsspec filesystem for ``url``'s protocol (never a cached instance: one per
    process), or BackendUnavailable saying what to install."""
    try:
        import fsspec

        return fsspec.filesystem(fsspec.utils.get_protocol(url), skip_instance_cache=True,
                                 **(storage_options or {}))
    except ImportError as exc:
        raise BackendUnavailable(f"{url}: {exc}; {REMOTE_INSTALL}") from None


def with_retries(what: str, call: Callable[[], Any], retries: int, backoff_s: float) -> Any:
    """``call()`` with retries and exponential backoff on transient errors; a missing object or
    a refusal is final at once. The SourceError names ``what`` (the object and range)."""
    error: BaseException = RuntimeError("no attempt")
    for attempt in range(max(1, retries)):
        try:
            return call()
        except FastloadError:
            raise  # already named (a local disk, a checksum): nothing to retry
        except FileNotFoundError as exc:
            raise SourceUnavailable(f"{what}: not found ({exc}); check the URL, the bucket "
                                    "and the prefix") from None
        except PermissionError as exc:
            raise SourceUnavailable(f"{what}: access denied ({exc}); check the credentials in "
                                    "storage_options (or the environment fsspec reads)") from None
        except Exception as exc:  # noqa: BLE001 - network, server: retried, then named
            error = exc
            if attempt + 1 < retries:
                time.sleep(backoff_s * 4 ** attempt)
    raise SourceUnavailable(f"{what}: failed after {max(1, retries)} tries "
                            f"({type(error).__name__}: {error}); check the endpoint and the "
                            "network") from None


def glob_urls(fs: Any, pattern: str) -> list[str]:
    """The objects matching ``pattern`` (a URL with ``*?[``), sorted, as URLs (fsspec lists
    them without the protocol)."""
    protocol = pattern.split("://", 1)[0]
    return sorted(f if "://" in f else f"{protocol}://{f}" for f in fs.glob(pattern))


def cached_shard(cache: ShardCache, url: str, size: int, version: str,
                 call: Callable[[str, Callable[[Any], Any]], Any],
                 sha256: Optional[str] = None) -> Path:
    """The local copy of the shard at ``url`` in ``cache``, downloaded now when missing;
    ``call(what, fetch)`` runs ``fetch(fs)`` with the source's retries."""
    folder = cache.folder
    return cache.get(url, size, version, lambda tmp: call(
        f"{url} (the whole shard, for the cache)", lambda fs: download(fs, url, tmp, folder)),
        sha256=sha256)


def read_cached(local: Callable[[], Path], ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """``(size, offset)`` ranges of the cached shard ``local()`` gives, read from one open
    file; a copy evicted by another process between ``local()`` and the open is fetched again,
    once."""
    for attempt in range(2):
        try:
            with open(local(), "rb") as handle:
                return [os.pread(handle.fileno(), size, offset) for size, offset in ranges]
        except FileNotFoundError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def download(fs: Any, url: str, path: str, folder: Path) -> None:
    """Copy the object ``url`` to the local file ``path`` (in the cache ``folder``) in chunks:
    an error of the local file is a SourceError saying what to do there (never retried as a
    network error); an error reading ``url`` is raised as it is (retried by the caller)."""
    with fs.open(url, "rb", block_size=CHUNK) as src, _local_file(path, folder) as write:
        while chunk := src.read(CHUNK):
            write(chunk)


@contextmanager
def _local_file(path: str, folder: Path) -> Iterator[Callable[[bytes], Any]]:
    try:
        handle = open(path, "wb")
    except OSError as exc:
        raise write_error(folder, exc) from None

    def write(chunk: bytes) -> None:
        try:
            handle.write(chunk)
        except OSError as exc:
            raise write_error(folder, exc) from None

    try:
        yield write
    finally:
        try:
            handle.close()
        except OSError as exc:
            raise write_error(folder, exc) from None


def _one_thread(_: int = 0) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="fastload-fetch")


def leave(handle: Any) -> None:
    """A filesystem or executor inherited across a fork is dropped, not closed: its
    connections are the parent's, and its thread does not exist in the child."""


class RemoteTFRecordSource:
    """Samples of a converted TFRecord dataset at ``url`` (the folder holding manifest.json)."""

    def __init__(self, url: str, *, storage_options: Optional[dict[str, Any]] = None,
                 image_key: str = IMAGE_KEY, label_key: str = LABEL_KEY, verify_crc: bool = True,
                 retries: int = 4, backoff_s: float = 0.2,
                 cache_dir: Optional[Union[str, Path]] = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        """``cache_dir``: keep whole shards in this local folder (``shard_cache.ShardCache``:
        at most ``cache_bytes``, least recently used out first, shared by the node's processes)
        and read records from there; without it, each record is a range request."""
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.verify_crc, self.retries, self.backoff_s = verify_crc, retries, backoff_s
        self._keys = (image_key.encode("utf-8"), label_key.encode("utf-8"))
        self._fs = PerProcess(self._new_fs, leave)
        self._cache: dict[int, bytes] = {}
        self._ahead: Optional[Future] = None  # the look-ahead fetch in flight
        self._background = PerProcess(_one_thread, leave)
        where = f"{self.url}/{MANIFEST}"
        text = self._whole(where)
        self.manifest = parse_manifest(text.decode("utf-8", "replace"), where)
        self._version = hashlib.sha256(text).hexdigest()[:16]  # cache names follow the manifest
        self.cache = None if cache_dir is None else ShardCache(cache_dir, cache_bytes)
        if self.manifest.format != "tfrecord":
            raise SourceError(f"{self.url}: holds {self.manifest.format} shards; from a URL only "
                              "TFRecord is read (LMDB needs a local file to map): convert with "
                              "--format tfrecord, or copy the shards to a local disk")
        self.shards = [f"{self.url}/{s.file}" for s in self.manifest.shards]
        rows = [tfrecord.parse_index(self._whole(f"{self.url}/{s.index}").decode("ascii", "replace"),
                                     f"{self.url}/{s.index}", shard, s.bytes)
                for shard, s in zip(self.shards, self.manifest.shards)]
        self._shard, self._record, self._offset, self._length = record_table(
            self.shards, rows, self.manifest)
        self.classes = list(self.manifest.classes)
        if not len(self._offset):
            raise SourceError(f"{self.url}: the TFRecord shards hold no records")

    # --- the filesystem, once per process ------------------------------------------------------
    def _new_fs(self, _: int = 0) -> Any:
        return filesystem(self.url, self.storage_options)

    def _call(self, what: str, fetch: Callable[[Any], Any]) -> Any:
        """``fetch(fs)`` on this process's filesystem, with this source's retries."""
        return with_retries(what, lambda: fetch(self._fs.get(0)), self.retries, self.backoff_s)

    def _whole(self, url: str) -> bytes:
        return self._call(url, lambda fs: fs.cat_file(url))

    # --- samples ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._offset)

    def _range(self, index: int) -> tuple[str, int, int]:
        offset = int(self._offset[index])
        return self.shards[self._shard[index]], offset, offset + int(self._length[index])

    def locate(self, index: int) -> str:
        path, start, end = self._range(index)
        return f"{path} record {self._record[index]} (bytes {start}-{end - 1}, sample {index})"

    def prefetch(self, indices: Sequence[int], ahead: Optional[Sequence[int]] = None) -> None:
        """Fetch these samples' records together (one concurrent ``cat_ranges``), unless the
        previous call's look-ahead already did; then start fetching ``ahead`` (the batch this
        process will most likely read next) in a background thread, so its latency overlaps
        this batch's decoding. Records kept: this batch's and the next's, no more. A failed
        fetch is left for ``read`` to fetch alone, and to name if it fails again."""
        batch = {int(i) for i in np.asarray(indices).ravel()}
        following = set() if ahead is None else {int(i) for i in np.asarray(ahead).ravel()}
        if self._ahead is not None:  # the previous look-ahead: its records, when they are due
            self._cache.update(self._ahead.result())
            self._ahead = None
        self._cache = {i: v for i, v in self._cache.items() if i in batch or i in following}
        self._cache.update(self._fetch(sorted(batch - set(self._cache))))
        wanted = sorted(following - set(self._cache))
        if wanted:
            self._ahead = self._background.get(0).submit(self._fetch, wanted)

    def _fetch(self, wanted: list[int]) -> dict[int, bytes]:
        if not wanted:
            return {}
        if self.cache is not None:
            try:
                return self._from_cache(wanted)
            except SourceUnavailable:
                raise  # the storage or the cache disk as a whole: no sample would do better
            except SourceError:
                return {}  # read() fetches each alone, and names the failure
        paths, starts, ends = zip(*(self._range(i) for i in wanted))
        # all at once (fsspec's default may go one by one); a range that fails alone is left to
        # read(), which names it; the storage failing as a whole is raised here
        data = self._call(f"{len(wanted)} records of {self.url}", lambda fs: fs.cat_ranges(
            list(paths), list(starts), list(ends), on_error="return", batch_size=len(wanted)))
        return {i: bytes(v) for i, v in zip(wanted, data) if isinstance(v, (bytes, bytearray))}

    def _from_cache(self, wanted: list[int]) -> dict[int, bytes]:
        """The records, read from the shards' local copies (downloaded whole when missing)."""
        got: dict[int, bytes] = {}
        by_shard: dict[int, list[int]] = {}
        for index in wanted:
            by_shard.setdefault(int(self._shard[index]), []).append(index)
        for shard, indices in by_shard.items():
            ranges = [(int(self._length[i]), int(self._offset[i])) for i in indices]
            got.update(zip(indices, read_cached(lambda: self._local(shard), ranges)))
        return got

    def _local(self, shard: int) -> Path:
        assert self.cache is not None
        info = self.manifest.shards[shard]
        return cached_shard(self.cache, self.shards[shard], info.bytes, self._version,
                            self._call, info.sha256)

    def read_record(self, index: int) -> bytes:
        buf = self._cache.pop(index, None)
        if buf is None and self.cache is not None:
            buf = self._from_cache([index])[index]
        if buf is None:
            path, start, end = self._range(index)
            buf = self._call(self.locate(index), lambda fs: fs.cat_file(path, start=start, end=end))
        try:
            return checked_record(buf, int(self._length[index]), self.locate(index),
                                  self.verify_crc)
        except FormatError:
            if self.cache is None:
                raise
        # the local copy went bad after its checked download (a disk, a stray write): drop it
        # and download the shard once more; a record that fails again is damaged at the source
        shard = int(self._shard[index])
        url, size = self.shards[shard], self.manifest.shards[shard].bytes
        warnings.warn(f"{self.cache.folder}: the cached copy of {url} failed a record's CRC "
                      "(damaged on the local disk); downloading it again", RuntimeWarning,
                      stacklevel=2)
        self.cache.discard(url, size, self._version)
        self._cache = {i: v for i, v in self._cache.items() if int(self._shard[i]) != shard}
        buf = self._from_cache([index])[index]
        return checked_record(buf, int(self._length[index]), self.locate(index), self.verify_crc)

    def read(self, index: int) -> tuple[bytes, int]:
        return image_and_label(self.read_record(index), self._keys, self.locate(index))

    def shard_ids(self) -> np.ndarray:
        """Each sample's shard number (for the shard-aware order)."""
        return self._shard

    def describe(self) -> dict[str, Any]:
        return {"kind": "tfrecord", "url": self.url, "shards": len(self.shards),
                "samples": len(self), "classes": len(self.classes), "manifest": True}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"], state["_ahead"] = {}, None
        return state

    def __repr__(self) -> str:
        return f"RemoteTFRecordSource({self.url!r}, shards={len(self.shards)}, samples={len(self)})"
