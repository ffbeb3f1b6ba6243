"""The local shard cache: whole files only, one download per shard across processes, LRU
eviction under the bound, and a crashed download never used."""

import multiprocessing
import os
import time

import pytest

from fastload.errors import SourceError
from fastload.sources.shard_cache import ShardCache


def writer(payload, log=None, delay=0.0):
    def download(tmp):
        if log is not None:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
        with open(tmp, "wb") as f:
            f.write(payload[: len(payload) // 2])
            f.flush()
            time.sleep(delay)  # a slow network: the others must wait, not read half a file
            f.write(payload[len(payload) // 2:])
    return download


def _get_in_child(folder, log, queue):
    cache = ShardCache(folder, 10_000)
    path = cache.get("s3://b/p/shard-0.tfrecord", 3000, "v1", writer(b"x" * 3000, log, 0.3))
    queue.put(len(path.read_bytes()))


def test_one_download_for_many_processes(tmp_path):
    log = tmp_path / "downloads.log"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_get_in_child, args=(tmp_path / "cache", log, queue))
                for _ in range(4)]
    for child in children:
        child.start()
    sizes = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
    assert sizes == [3000] * 4  # each saw the whole file
    assert len(log.read_text().split()) == 1  # downloaded once


def test_a_failed_download_leaves_nothing_and_the_next_one_works(tmp_path):
    cache = ShardCache(tmp_path, 10_000)

    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b"y" * 100)
        raise ConnectionError("reset mid-download")

    with pytest.raises(ConnectionError):
        cache.get("s3://b/shard-1.tfrecord", 500, "v1", broken)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    path = cache.get("s3://b/shard-1.tfrecord", 500, "v1", writer(b"z" * 500))
    assert path.read_bytes() == b"z" * 500
    short = ShardCache(tmp_path / "other", 10_000)
    with pytest.raises(SourceError, match="downloaded 10 bytes, the manifest says 500"):
        short.get("s3://b/shard-1.tfrecord", 500, "v1", writer(b"z" * 10))
    assert not any(p.name.endswith(".tfrecord") for p in (tmp_path / "other").iterdir())


def test_least_recently_used_shards_go_first_and_the_bound_holds(tmp_path):
    cache = ShardCache(tmp_path, 2500)
    paths = {}
    for k in range(3):
        paths[k] = cache.get(f"s3://b/s-{k}.tfrecord", 1000, "v1", writer(bytes([k]) * 1000))
        time.sleep(0.01)
    assert cache.bytes_used() <= 2500 and not paths[0].exists()  # 0 made room for 2
    time.sleep(0.01)
    cache.get("s3://b/s-1.tfrecord", 1000, "v1", writer(b"never"))  # a hit: 1 is now recent
    time.sleep(0.01)
    cache.get("s3://b/s-3.tfrecord", 1000, "v1", writer(b"\x03" * 1000))
    assert paths[1].exists() and not paths[2].exists() and cache.bytes_used() <= 2500
    # a new manifest (re-converted data): other names, never the stale files
    fresh = cache.get("s3://b/s-1.tfrecord", 1000, "v2", writer(b"\x09" * 1000))
    assert fresh != paths[1] and fresh.read_bytes() == b"\x09" * 1000
    with pytest.raises(SourceError, match="larger than the whole cache"):
        cache.get("s3://b/huge.tfrecord", 5000, "v1", writer(b"h" * 5000))


def test_a_download_that_is_not_the_manifests_object_never_takes_a_final_name(tmp_path):
    import hashlib

    cache = ShardCache(tmp_path, 10_000)
    good = b"g" * 800
    digest = hashlib.sha256(good).hexdigest()
    with pytest.raises(SourceError, match=r"s3://b/s-0.tfrecord: the downloaded shard's sha256 "
                                          r"is .* the manifest says " + digest[:16]):
        cache.get("s3://b/s-0.tfrecord", 800, "v1", writer(b"b" * 800), sha256=digest)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
    path = cache.get("s3://b/s-0.tfrecord", 800, "v1", writer(good), sha256=digest)
    assert path.read_bytes() == good
    cache.discard("s3://b/s-0.tfrecord", 800, "v1")  # found damaged later: gone, fetched anew
    assert not path.exists()
    assert cache.get("s3://b/s-0.tfrecord", 800, "v1", writer(good), sha256=digest) == path


def _slow_get(folder, k, queue):
    cache = ShardCache(folder, 2500)
    path = cache.get(f"s3://b/s-{k}.tfrecord", 1000, "v1", writer(bytes([k]) * 1000, delay=0.4))
    queue.put((k, len(path.read_bytes()) if path.exists() else "evicted"))


def test_downloads_in_flight_count_against_the_bound(tmp_path):
    """Three processes download 1000-byte shards at once under a 2500-byte bound: the third
    waits for room, and the bytes on disk never exceed the bound (they reached 1.5x when only
    whole shards were counted)."""
    import threading

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            used = 0
            for p in tmp_path.iterdir():
                try:
                    used += p.stat().st_size if not p.name.endswith(".lock") else 0
                except FileNotFoundError:
                    pass
            peak[0] = max(peak[0], used)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    children = [ctx.Process(target=_slow_get, args=(tmp_path, k, queue)) for k in range(3)]
    for child in children:
        child.start()
    results = dict(queue.get(timeout=30) for _ in children)
    for child in children:
        child.join(timeout=30)
    done.set()
    watcher.join()
    assert sorted(results) == [0, 1, 2] and list(results.values()).count(1000) >= 2
    assert 1000 <= peak[0] <= 2500
    assert ShardCache(tmp_path, 2500).bytes_used() <= 2500


def test_leftovers_of_dead_processes_are_removed_and_no_lock_files_pile_up(tmp_path):
    from fastload.file_lock import alive

    cache = ShardCache(tmp_path, 10_000)
    dead = next(pid for pid in range(400_000, 500_000) if not alive(pid))
    stale = tmp_path / f"{cache.name('s3://b/s-9.tfrecord', 900, 'v1')}.part-{dead}-900"
    stale.write_bytes(b"p" * 300)
    os.utime(stale, (time.time() - 600, time.time() - 600))  # it stopped growing long ago
    fresh = tmp_path / f"{cache.name('s3://b/s-7.tfrecord', 900, 'v1')}.part-{dead}-900"
    fresh.write_bytes(b"p" * 300)  # a pid we cannot see, still writing: another pid namespace
    orphan_lock = tmp_path / f"{cache.name('s3://b/s-8.tfrecord', 900, 'v1')}.lock"
    orphan_lock.touch()
    for k in range(4):
        cache.get(f"s3://b/s-{k}.tfrecord", 1000, "v1", writer(bytes([k]) * 1000))
    assert not stale.exists() and not orphan_lock.exists() and fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".cache.lock"]


def test_a_cache_folder_that_cannot_be_written_is_named_when_made(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SourceError, match=r"file/cache: cannot write the shard cache .*; pass a "
                                          r"writable cache_dir"):
        ShardCache(tmp_path / "file" / "cache", 10_000)


def test_a_full_disk_is_named_at_once_not_retried_as_the_network(tmp_path, monkeypatch):
    """The shard's bytes go to a file that answers ENOSPC (/dev/full): one try, and the error
    says the disk is full, not that the endpoint or the network failed."""
    import fsspec

    from fastload.sources.remote import download, with_retries

    source = tmp_path / "shard.tfrecord"
    source.write_bytes(b"s" * 1000)
    cache = ShardCache(tmp_path / "cache", 10_000)
    url = f"file://{source}"
    part = cache.folder / f"{cache.name(url, 1000, 'v1')}.part-{os.getpid()}-1000"
    part.symlink_to("/dev/full")
    monkeypatch.setattr(type(part), "touch", lambda self, *a, **k: None)  # keep the link
    tries = []

    def fetch(tmp):
        return with_retries(url, lambda: tries.append(tmp) or download(
            fsspec.filesystem("file"), str(source), tmp, cache.folder), retries=4, backoff_s=0.5)

    with pytest.raises(SourceError, match=r"cache: cannot write the shard cache \(No space left "
                                          r"on device\); the disk is full") as caught:
        cache.get(url, 1000, "v1", fetch)
    assert len(tries) == 1 and "network" not in str(caught.value)
