"""Shards from object storage: a real S3 API on loopback (moto's server, started here), the
converted TFRecord shards uploaded to it, and the loader reading them by byte ranges: the same
batches as from the local shards, exact resume, retried transient errors, and named failures."""

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

import fastload as fl
from fastload.backends import dali_available
from fastload.tools.convert import convert

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

PIPE = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(24), fl.RandomFlip())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def options(endpoint):
    return {"key": "testing", "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            "config_kwargs": {"retries": {"max_attempts": 1}}}  # fastload's retries, not boto's


@pytest.fixture(scope="module")
def s3(tmp_path_factory, jpeg_folder):
    """A moto S3 server on 127.0.0.1 with the converted shards at s3://data/train."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    local = tmp_path_factory.mktemp("shards") / "train"
    convert(jpeg_folder, local, format="tfrecord", shards=2)
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="data")
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options(endpoint))
    for path in sorted(local.iterdir()):
        fs.put_file(str(path), f"data/train/{path.name}")
    yield endpoint, local
    server.stop()


class Faulty(ThreadingHTTPServer):
    """A proxy in front of the S3 server that answers 500 to the first ``fail`` range reads of
    a shard (all of them with ``fail=-1``), and forwards everything else."""

    def __init__(self, upstream, fail, cut=False):
        self.upstream, self.fail, self.failed, self.cut = upstream, fail, 0, cut
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)

    def should_fail(self, handler):
        if handler.command != "GET" or ".tfrecord" not in handler.path or \
                handler.path.endswith(".idx") or "Range" not in handler.headers:
            return False
        with self.lock:
            if self.fail < 0 or self.failed < self.fail:
                self.failed += 1
                return True
        return False


class _Forward(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _forward(self):
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size) if size else None
        failing = self.server.should_fail(self)
        if failing and not self.server.cut:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        host, port = self.server.upstream
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        upstream.request(self.command, self.path, body, dict(self.headers))
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))  # HEAD: the object's size
        self.end_headers()
        if failing:  # the connection drops mid-body
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward


@pytest.fixture
def faulty(s3):
    def start(fail, cut=False):
        proxy = Faulty(("127.0.0.1", int(s3[0].rsplit(":", 1)[1])), fail, cut)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        started.append(proxy)
        return f"http://127.0.0.1:{proxy.server_address[1]}", proxy
    started = []
    yield start
    for proxy in started:
        proxy.shutdown()


def batches(source, workers=0, backend="torch", **kw):
    with fl.loader(source, PIPE, 5, num_workers=workers, seed=4, shuffle=True,
                   backend=backend, **kw) as ld:
        return [(b.images, b.labels, b.indices) for b in ld]


def same(a, b):
    assert len(a) == len(b)
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(xa, xb)


@pytest.mark.parametrize("workers", [0, 2])
def test_remote_shards_give_the_local_shards_batches(s3, workers):
    endpoint, local = s3
    remote = fl.RemoteTFRecordSource("s3://data/train", storage_options=options(endpoint))
    assert len(remote) == 37 and remote.classes == fl.open_source(local).classes
    assert "s3://data/train/train-0000" in remote.locate(3) and "bytes " in remote.locate(3)
    same(batches(remote, workers), batches(local, workers))
    if dali_available() and workers == 0:
        same(batches(remote, 1, backend="dali"), batches(local, 1, backend="dali"))


def test_remote_resume_mid_epoch_is_exact(s3):
    endpoint, local = s3
    remote = fl.RemoteTFRecordSource("s3://data/train", storage_options=options(endpoint))
    with fl.loader(remote, PIPE, 5, seed=4, shuffle=True) as ld:
        it = iter(ld)
        for _ in range(3):
            next(it)
        state = ld.state_dict()
        rest = [(b.images, b.labels, b.indices) for b in it]
    with fl.loader(remote, PIPE, 5, seed=4, shuffle=True) as ld:
        ld.load_state_dict(state)
        same([(b.images, b.labels, b.indices) for b in ld], rest)


def test_transient_server_errors_are_retried(s3, faulty):
    endpoint, local = s3
    proxied, proxy = faulty(3)
    remote = fl.RemoteTFRecordSource("s3://data/train", storage_options=options(proxied),
                                     backoff_s=0.01)
    same(batches(remote), batches(local))
    assert proxy.failed == 3


@pytest.mark.parametrize("cut", [False, True])
def test_a_server_that_keeps_failing_is_named_with_the_object_and_range(s3, faulty, cut):
    """Every range read answered 500, or cut mid-body: after the retries, the error names the
    object and the byte range."""
    proxied, _ = faulty(-1, cut=cut)
    remote = fl.RemoteTFRecordSource("s3://data/train", storage_options=options(proxied),
                                     retries=2, backoff_s=0.01)
    with pytest.raises(fl.SourceError, match=r"s3://data/train/train-0000\d-of-00002\.tfrecord "
                                             r"record \d+ \(bytes \d+-\d+, sample \d+\): failed "
                                             r"after 2 tries"):
        batches(remote)


def test_a_missing_bucket_or_prefix_is_named(s3):
    endpoint, _ = s3
    with pytest.raises(fl.SourceError, match=r"s3://nowhere/train/manifest\.json: not found"):
        fl.RemoteTFRecordSource("s3://nowhere/train", storage_options=options(endpoint))
    with pytest.raises(fl.SourceError, match=r"s3://data/other/manifest\.json: not found"):
        fl.RemoteTFRecordSource("s3://data/other", storage_options=options(endpoint))


def test_the_shard_cache_serves_later_epochs_without_the_network(s3, faulty, tmp_path):
    """With cache_dir: each shard downloaded whole once (two workers, shard-aware order), the
    same batches as the local shards; then the server can fail every read and the cached
    shards still serve."""
    endpoint, local = s3
    proxied, proxy = faulty(0)
    cache = tmp_path / "cache"
    remote = fl.RemoteTFRecordSource("s3://data/train", storage_options=options(proxied),
                                     cache_dir=cache, cache_bytes=10 * 2**20)
    same(batches(remote, 2, shard_window=1), batches(local, 2, shard_window=1))
    files = sorted(p.name for p in cache.iterdir() if p.name.endswith(".tfrecord"))
    assert len(files) == 2 and all(name.endswith("-of-00002.tfrecord") for name in files)
    assert sum(p.stat().st_size for p in cache.iterdir() if p.name.endswith(".tfrecord")) == \
        sum(p.stat().st_size for p in local.glob("*.tfrecord"))
    proxy.fail = -1  # the network is gone; the cache is not
    same(batches(remote), batches(local))


def test_wrong_credentials_are_named(tmp_path, jpeg_folder):
    """A server that checks signatures (moto with authentication on) refuses a wrong secret:
    the error names the object and says to check the credentials."""
    import urllib.request

    def auth_after(count):  # moto's switch (process-wide: put back in the end)
        answer = urllib.request.urlopen(urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", str(count).encode(),
            {"Content-Type": "application/octet-stream"}))
        return json.loads(answer.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        policy = iam.create_policy(PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        iam.attach_user_policy(UserName="reader", PolicyArn=policy["Policy"]["Arn"])
        good = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"],
                "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        previous = auth_after(0)
        try:
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id=key["AccessKeyId"],
                         aws_secret_access_key=key["SecretAccessKey"]).create_bucket(Bucket="secured")
            with pytest.raises(fl.SourceError, match=r"s3://secured/train/manifest\.json: access "
                                                     r"denied .*check the credentials"):
                fl.RemoteTFRecordSource("s3://secured/train", storage_options={
                    **good, "secret": "wrong"})
        finally:
            auth_after(previous)
    finally:
        server.stop()


@pytest.mark.slow
def test_two_ddp_ranks_over_the_bucket(s3, tmp_path):
    """torch.distributed (gloo, 2 spawned ranks, 2 workers each) training from the bucket:
    equal batch counts, disjoint ranks covering the dataset, the global order of local runs."""
    from test_ddp import BATCH, launch, real

    from fastload.order.sharding import permutation

    endpoint, _ = s3
    ranks = launch(2, tmp_path, data="s3://data/train", storage_options=options(endpoint),
                   seed=3, workers=2)
    batches = -(-37 // (2 * BATCH))  # 37 samples, 2 ranks, padded
    for e in range(2):
        assert [len(r["epochs"][e]["batches"]) for r in ranks] == [batches] * 2
        assert all(r["epochs"][e]["all_ranks_batches"] == 2 * batches for r in ranks)
        assert sorted(i for r in ranks for i in real(r["epochs"][e])) == list(range(37))
        order = permutation(37, 3, e)
        for rank, record in enumerate(ranks):
            got = [i for b in record["epochs"][e]["batches"] for i in b["indices"]]
            assert got == order[(rank + 2 * np.arange(batches * BATCH)) % 37].tolist()


def test_convert_to_a_bucket_then_verify_and_index_there(s3, jpeg_folder, tmp_path, monkeypatch):
    """`fastload convert SRC s3://...`: the manifest is written last (a reader never sees a
    half-written dataset), the result reads as the local shards do; `verify` and `index` work
    on URLs and name a damaged object."""
    from fastload.tools import remote_dataset
    from fastload.tools.remote_dataset import index_url, verify_url

    endpoint, local = s3
    storage = options(endpoint)
    written = []
    made = remote_dataset.filesystem

    def recording(url, storage_options=None):  # the order in which objects are written
        fs = made(url, storage_options)
        put, pipe = fs.put_file, fs.pipe_file
        fs.put_file = lambda lpath, rpath, **kw: (written.append(rpath), put(lpath, rpath, **kw))[1]
        fs.pipe_file = lambda path, value, **kw: (written.append(path), pipe(path, value, **kw))[1]
        return fs

    monkeypatch.setattr(remote_dataset, "filesystem", recording)
    convert(jpeg_folder, "s3://data/fresh", format="tfrecord", shards=2,
            storage_options=storage, staging=tmp_path / "staging")
    assert not (tmp_path / "staging").exists()
    assert written[-1] == "s3://data/fresh/manifest.json"
    assert sum(".tfrecord" in p for p in written) == 4  # 2 shards + 2 indexes, before it
    remote = fl.RemoteTFRecordSource("s3://data/fresh", storage_options=storage)
    same(batches(remote), batches(local))
    report = verify_url("s3://data/fresh", storage_options=storage)
    assert report.ok and report.records == 37, report.summary()
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **storage)
    name = "data/fresh/train-00001-of-00002.tfrecord"
    idx = fs.cat_file(name + ".idx")
    fs.rm_file(name + ".idx")
    assert index_url("s3://" + name, storage_options=storage) == "s3://" + name + ".idx"
    assert fs.cat_file(name + ".idx") == idx
    data = bytearray(fs.cat_file(name))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(name, bytes(data))
    report = verify_url("s3://data/fresh", storage_options=storage)
    assert not report.ok and report.records == 19
    assert "s3://data/fresh/train-00001-of-00002.tfrecord: sha256" in report.errors[0]
    # converting again to the same URL is a no-op; another dataset there is refused
    convert(jpeg_folder, "s3://data/fresh", format="tfrecord", shards=2,
            storage_options=storage, staging=tmp_path / "staging")
    with pytest.raises(fl.SourceError, match="already holds a converted dataset"):
        convert(jpeg_folder, "s3://data/fresh", format="tfrecord", shards=3,
                storage_options=storage, staging=tmp_path / "staging3")
    with pytest.raises(fl.SourceError, match="only TFRecord"):
        convert(jpeg_folder, "s3://data/other", format="lmdb", storage_options=storage)


def test_a_connection_cut_mid_read_is_retried(s3, faulty):
    """The server sends half a record's bytes and closes the connection: retried, the same
    batches (when it always does: the parametrized test above)."""
    endpoint, local = s3
    proxied, proxy = faulty(3, cut=True)
    remote = fl.RemoteTFRecordSource("s3://data/train", storage_options=options(proxied),
                                     backoff_s=0.01)
    same(batches(remote), batches(local))
    assert proxy.failed == 3


def test_a_damaged_cached_shard_is_downloaded_again_once(s3, tmp_path):
    """Random bytes of the right size under a cached shard's final name (a disk fault, a stray
    write): the first record that fails its CRC drops the copy, the shard is downloaded again
    (its sha256 checked), and the batches are the local shards'."""
    endpoint, local = s3
    cache = tmp_path / "cache"
    remote = fl.RemoteTFRecordSource("s3://data/train", storage_options=options(endpoint),
                                     cache_dir=cache, cache_bytes=10 * 2**20)
    want = batches(local)
    same(batches(remote), want)
    (shard,) = [p for p in cache.iterdir() if p.name.endswith("-00000-of-00002.tfrecord")]
    size = shard.stat().st_size
    shard.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    with pytest.warns(RuntimeWarning, match="the cached copy of s3://data/train/train-00000-of-"
                                            "00002.tfrecord failed a record's CRC"):
        same(batches(remote), want)
    assert shard.read_bytes() == (local / "train-00000-of-00002.tfrecord").read_bytes()


def test_a_server_that_stays_down_is_named_at_once_with_on_error_skip_too(s3, faulty):
    """Every record read fails: skipping would only retry the next sample against the same
    dead server until the watchdog fired (600 s); the storage's own error comes instead."""
    import time

    proxied, proxy = faulty(-1)
    remote = fl.RemoteTFRecordSource("s3://data/train", storage_options=options(proxied),
                                     retries=2, backoff_s=0.01)
    started = time.monotonic()
    for policy in ("raise", "skip"):
        with fl.loader(remote, PIPE, 5, num_workers=1, on_error=policy, timeout=120) as ld:
            with pytest.raises(fl.SourceUnavailable, match=r"s3://data/train.*failed after 2 "
                                                           r"tries .*check the endpoint"):
                next(iter(ld))
    assert time.monotonic() - started < 60


def _upload(endpoint, folder, prefix):
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options(endpoint))
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.endswith(".npz"):
            fs.put_file(str(path), f"data/{prefix}/{path.name}")


def test_webdataset_shards_in_a_bucket_read_through_the_shard_cache(s3, jpeg_folder, tmp_path):
    webdataset = pytest.importorskip("webdataset")
    endpoint, _ = s3
    src = fl.FolderSource(jpeg_folder, index_file=None)
    (tmp_path / "wds").mkdir()
    with webdataset.ShardWriter(str(tmp_path / "wds" / "part-%03d.tar"), maxcount=10,
                                verbose=0) as sink:
        for i in range(len(src)):
            data, y = src.read(i)
            sink.write({"__key__": f"s{i:04d}", "jpg": data, "cls": y})
    _upload(endpoint, tmp_path / "wds", "wds")
    cache = tmp_path / "cache"
    made = lambda url: fl.WebDatasetSource(url, storage_options=options(endpoint),  # noqa: E731
                                           cache_dir=cache, cache_bytes=1 << 30)
    source = made("s3://data/wds/part-{000..003}.tar")
    assert len(source) == 37 and [source.read(i) for i in range(37)] == \
        [src.read(i) for i in range(37)]
    assert "s3://data/wds/part-001.tar key 's0012'" in source.locate(12)
    assert len(made("s3://data/wds/part-*.tar")) == 37  # a glob, listed by the store
    for f in cache.glob("*part-00[12].tar"):  # evicted: downloaded again when read
        f.unlink()
    again = made("s3://data/wds/part-{000..003}.tar")
    assert [again.read(i) for i in (11, 25)] == [src.read(11), src.read(25)]
    with fl.loader(source, PIPE, 8, seed=2) as ld:
        remote = [b.labels for b in ld]
    with fl.loader(jpeg_folder, PIPE, 8, seed=2) as ld:
        local = [b.labels for b in ld]
    assert all(torch.equal(a, b) for a, b in zip(remote, local))
    with pytest.raises(fl.SourceUnavailable, match="part-008.tar: not found"):
        made("s3://data/wds/part-{008..009}.tar")


def test_converted_webdataset_in_a_bucket_is_read_by_its_manifest(s3, jpeg_folder, tmp_path):
    endpoint, _ = s3
    convert(jpeg_folder, tmp_path / "conv", format="webdataset", shards=3)
    _upload(endpoint, tmp_path / "conv", "conv")
    source = fl.WebDatasetSource("s3://data/conv", storage_options=options(endpoint),
                                 cache_dir=tmp_path / "cache")
    local = fl.WebDatasetSource(tmp_path / "conv")
    assert source.classes == local.classes and len(source) == 37
    assert [source.read(i) for i in range(37)] == [local.read(i) for i in range(37)]


def test_parquet_in_a_bucket_is_read_by_byte_ranges(s3, jpeg_folder, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    endpoint, _ = s3
    src = fl.FolderSource(jpeg_folder, index_file=None)
    table = pa.table({"image": [src.read(i)[0] for i in range(len(src))],
                      "label": [int(y) for y in src.labels]})
    (tmp_path / "pq").mkdir()
    pq.write_table(table.slice(0, 20), tmp_path / "pq" / "a.parquet", row_group_size=6)
    pq.write_table(table.slice(20), tmp_path / "pq" / "b.parquet", compression="zstd")
    _upload(endpoint, tmp_path / "pq", "pq")
    source = fl.ParquetSource("s3://data/pq/*.parquet", storage_options=options(endpoint))
    assert len(source) == 37 and source.files == ["s3://data/pq/a.parquet",
                                                  "s3://data/pq/b.parquet"]
    assert [source.read(i) for i in range(37)] == [src.read(i) for i in range(37)]
    with fl.loader(source, PIPE, 8, seed=2, num_workers=2) as ld:
        remote = [b.labels for b in ld]
    with fl.loader(jpeg_folder, PIPE, 8, seed=2) as ld:
        local = [b.labels for b in ld]
    assert all(torch.equal(a, b) for a, b in zip(remote, local))
    with pytest.raises(fl.SourceUnavailable, match="s3://data/pq/c.parquet: not found"):
        fl.ParquetSource("s3://data/pq/c.parquet", storage_options=options(endpoint))
