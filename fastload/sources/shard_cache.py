"""Whole remote shards kept on a local disk: bounded, least-recently-used first out,
crash-safe, shared by every worker and process of a node that points at the same folder.

A shard is downloaded to ``<name>.part-<pid>`` and renamed to its final name only once all its
bytes arrived and their count matched the manifest: a final name is always a whole file, and a
crash leaves only a ``.part`` that the next download of that shard removes. One process
downloads a given shard at a time (``flock`` on ``<name>.lock``); the others wait for it and
then use the file. Before a download, the least recently used shards (by modification time,
touched on each use) are removed until the new one fits under ``max_bytes`` (under the
folder's ``flock``, so two processes never both count the same free space). A shard removed
while a process still reads it stays readable to that process (POSIX unlink). Final names
carry a digest of (URL, size, manifest digest), so a re-converted dataset never reads stale
files.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Union

from ..errors import SourceError

PART = ".part-"


class ShardCache:
    def __init__(self, folder: Union[str, Path], max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise SourceError(f"cache_bytes={max_bytes!r} must be a positive number of bytes")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SourceError(f"{self.folder}: cannot make the shard cache folder ({exc}); pass "
                              "a writable cache_dir") from None

    def name(self, url: str, size: int, version: str) -> str:
        digest = hashlib.sha256(f"{url}\0{size}\0{version}".encode()).hexdigest()[:16]
        return f"{digest}-{url.rstrip('/').rsplit('/', 1)[-1]}"

    def get(self, url: str, size: int, version: str,
            download: Callable[[str], None]) -> Path:
        """The local copy of shard ``url`` (``size`` bytes): present, or ``download(tmp_path)``
        now (by this process, or by another one that this one waits for)."""
        final = self.folder / self.name(url, size, version)
        if _usable(final, size):
            return final
        with _locked(final.with_name(final.name + ".lock")):
            if _usable(final, size):  # another process finished it while we waited
                return final
            if size > self.max_bytes:
                raise SourceError(f"{url}: the shard ({size} bytes) is larger than the whole "
                                  f"cache (cache_bytes={self.max_bytes}); raise cache_bytes")
            self._make_room(size, keep=final)
            part = final.with_name(f"{final.name}{PART}{os.getpid()}")
            for stale in self.folder.glob(f"{final.name}{PART}*"):
                stale.unlink(missing_ok=True)
            try:
                download(str(part))
                got = part.stat().st_size
                if got != size:
                    raise SourceError(f"{url}: downloaded {got} bytes, the manifest says {size}; "
                                      "the object changed after conversion, re-run convert")
                os.replace(part, final)
            finally:
                part.unlink(missing_ok=True)
        return final

    def _make_room(self, size: int, keep: Path) -> None:
        with _locked(self.folder / ".cache.lock"):
            shards = [(stat.st_mtime, stat.st_size, path) for path, stat in self._shards()]
            used = sum(s for _, s, _ in shards)
            for _, bytes_, path in sorted(shards, key=lambda s: s[0]):
                if used + size <= self.max_bytes:
                    break
                if path != keep:
                    path.unlink(missing_ok=True)
                    used -= bytes_

    def bytes_used(self) -> int:
        return sum(stat.st_size for _, stat in self._shards())

    def _shards(self) -> Iterator[tuple[Path, os.stat_result]]:
        """The whole shards in the folder (not locks, partial downloads or hidden files)."""
        for path in self.folder.iterdir():
            if path.name.startswith(".") or path.name.endswith(".lock") or PART in path.name:
                continue
            try:
                yield path, path.stat()
            except FileNotFoundError:  # removed by another process meanwhile
                continue


def _usable(path: Path, size: int) -> bool:
    """A whole shard at its final name; touched, so eviction sees it as just used."""
    try:
        if path.stat().st_size != size:
            return False
        os.utime(path)
        return True
    except FileNotFoundError:
        return False


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
