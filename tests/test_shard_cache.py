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
