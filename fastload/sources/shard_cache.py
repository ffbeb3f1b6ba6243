"""Whole remote shards kept on a local disk: bounded, least-recently-used first out,
crash-safe, checked, shared by every worker and process of a node that points at the same
folder.

- A shard is downloaded to ``<name>.part-<pid>-<size>`` and renamed to its final name only once
  all its bytes arrived, their count matched the manifest and so did their sha256: a final
  name is always the whole, verified file.
- One process downloads a given shard at a time (``flock`` on ``<name>.lock``, removed when the
  download ends); the others wait for it and then use the file.
- The bound holds for everything on disk: before a download, under the folder's lock, the
  bytes of the final shards plus the full size of every download in flight (the size in each
  ``.part`` name) are counted, and the least recently used shards (by modification time,
  touched on each use) are removed until the new one fits; while downloads in flight leave no
  room, it waits for them. Partial files of processes that died (and that stopped growing two
  minutes ago) and lock files nobody holds are removed then too.
- A shard removed while a process still reads it stays readable to that process (POSIX
  unlink). Final names carry a digest of (URL, size, manifest digest), so a re-converted
  dataset never reads stale files. A final file found damaged later (a record's CRC fails) is
  dropped with ``discard`` and downloaded again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from ..errors import SourceError, SourceUnavailable
from ..file_lock import alive, locked

PART = ".part-"
LOCK = ".lock"
FOLDER_LOCK = ".cache.lock"
WAIT_S = 0.05  # poll while downloads in flight fill the bound
#: a partial file is a dead process's only when its pid is gone *and* it has not grown for this
#: long (a process in another pid namespace sharing the folder looks gone, but keeps writing)
STALE_S = 120.0


def write_error(folder: Path, exc: OSError) -> SourceUnavailable:
    """The SourceError for a failed write into the cache folder, saying what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk is full: free space there, lower cache_bytes, or pass another cache_dir"
    else:
        hint = "pass a writable cache_dir"
    return SourceUnavailable(f"{folder}: cannot write the shard cache ({exc.strerror or exc}); "
                             f"{hint}")


class ShardCache:
    def __init__(self, folder: Union[str, Path], max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise SourceError(f"cache_bytes={max_bytes!r} must be a positive number of bytes")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        probe = self.folder / f".write-test-{os.getpid()}"
        try:  # a folder that cannot be written is said when the loader is made
            self.folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as exc:
            raise write_error(self.folder, exc) from None

    def name(self, url: str, size: int, version: str) -> str:
        digest = hashlib.sha256(f"{url}\0{size}\0{version}".encode()).hexdigest()[:16]
        return f"{digest}-{url.rstrip('/').rsplit('/', 1)[-1]}"

    def get(self, url: str, size: int, version: str, download: Callable[[str], None],
            sha256: Optional[str] = None) -> Path:
        """The local copy of shard ``url`` (``size`` bytes, and ``sha256`` when given): present,
        or ``download(tmp_path)`` now (by this process, or by another one that this one waits
        for), checked before it takes its final name."""
        final = self.folder / self.name(url, size, version)
        if _usable(final, size):
            return final
        if size > self.max_bytes:
            raise SourceError(f"{url}: the shard ({size} bytes) is larger than the whole "
                              f"cache (cache_bytes={self.max_bytes}); raise cache_bytes")
        downloading = False
        try:
            with locked(final.with_name(final.name + LOCK), remove=True):
                if _usable(final, size):  # another process finished it while we waited
                    return final
                part = self._reserve(final, size)
                try:
                    downloading = True
                    download(str(part))
                    downloading = False
                    _check(part, url, size, sha256)
                    os.replace(part, final)
                finally:
                    part.unlink(missing_ok=True)
        except OSError as exc:
            if downloading:
                raise  # the download's own error
            raise write_error(self.folder, exc) from None  # the cache's files: not retried
        return final

    def discard(self, url: str, size: int, version: str) -> None:
        """Drop the local copy of a shard found damaged: the next ``get`` downloads it again."""
        final = self.folder / self.name(url, size, version)
        with locked(final.with_name(final.name + LOCK), remove=True):
            final.unlink(missing_ok=True)

    def _reserve(self, final: Path, size: int) -> Path:
        """Room for ``size`` more bytes under the bound (in-flight downloads counted, least
        recently used shards removed), claimed by creating this download's ``.part`` file."""
        while True:
            with locked(self.folder / FOLDER_LOCK):
                self._remove_leftovers()
                in_flight = sum(size for _, size in self._parts())
                shards = sorted((stat.st_mtime, stat.st_size, path)
                                for path, stat in self._shards())
                used = in_flight + sum(s for _, s, _ in shards)
                for _, bytes_, path in shards:
                    if used + size <= self.max_bytes:
                        break
                    path.unlink(missing_ok=True)
                    used -= bytes_
                if used + size <= self.max_bytes:
                    part = final.with_name(f"{final.name}{PART}{os.getpid()}-{size}")
                    part.touch()
                    return part
            time.sleep(WAIT_S)  # the others' downloads fill it: one of them ends soon

    def _remove_leftovers(self) -> None:
        """Partial files of processes that are gone, and lock files nobody holds."""
        now = time.time()
        for path in self.folder.iterdir():
            if PART in path.name:
                pid = _part_owner(path.name)
                with contextlib.suppress(FileNotFoundError):
                    if (pid is None or not alive(pid)) and \
                            now - path.stat().st_mtime > STALE_S:
                        path.unlink()
            elif path.name.endswith(LOCK) and path.name != FOLDER_LOCK:
                with locked(path, wait=False, remove=True):
                    pass  # held: a download in flight; free: removed

    def _parts(self) -> Iterator[tuple[Path, int]]:
        """The downloads in flight and the size each one reserved."""
        for path in self.folder.iterdir():
            if PART in path.name:
                reserved = path.name.rsplit("-", 1)[-1]
                yield path, int(reserved) if reserved.isdigit() else 0

    def bytes_used(self) -> int:
        """Bytes on disk: the whole shards and what the downloads in flight have reserved."""
        return sum(stat.st_size for _, stat in self._shards()) + \
            sum(size for _, size in self._parts())

    def _shards(self) -> Iterator[tuple[Path, os.stat_result]]:
        """The whole shards in the folder (not locks, partial downloads or hidden files)."""
        for path in self.folder.iterdir():
            if path.name.startswith(".") or path.name.endswith(LOCK) or PART in path.name:
                continue
            try:
                yield path, path.stat()
            except FileNotFoundError:  # removed by another process meanwhile
                continue


def _part_owner(name: str) -> Optional[int]:
    owner = name.rsplit(PART, 1)[-1].split("-")[0]
    return int(owner) if owner.isdigit() else None


def _check(part: Path, url: str, size: int, sha256: Optional[str]) -> None:
    """A download that is not the object the manifest describes never takes a final name."""
    got = part.stat().st_size
    if got != size:
        raise SourceError(f"{url}: downloaded {got} bytes, the manifest says {size}; the object "
                          "changed after conversion: upload the converted shard again, or "
                          "re-run convert")
    if sha256 is None:
        return
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise SourceError(f"{url}: the downloaded shard's sha256 is {digest.hexdigest()[:16]}..., "
                          f"the manifest says {sha256[:16]}...: the object in storage is "
                          "damaged or was replaced; upload the converted shard again")


def _usable(path: Path, size: int) -> bool:
    """A whole shard at its final name; touched, so eviction sees it as just used."""
    try:
        if path.stat().st_size != size:
            return False
        os.utime(path)
        return True
    except FileNotFoundError:
        return False
