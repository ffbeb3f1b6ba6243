"""Converted datasets at a URL (``s3://``, ``gs://``, any fsspec URL): write, verify, index.

``upload`` puts a converted folder's shards and indexes at the URL first and its manifest
last, so a reader (which starts from the manifest) never sees a half-written dataset. Each
object appears under its final name only once whole: object stores publish a PUT (a multipart
one on completion) atomically. An upload that stops part-way is resumed by running it again:
objects already there with the right size are kept. ``verify`` and ``index`` fetch one shard
at a time into a temporary folder and run the local checks on it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional, TextIO, Union

from ..errors import SourceError
from ..formats.manifest import MANIFEST, parse_manifest, read_manifest
from ..sources.remote import filesystem, with_retries


def _named(what: str, call: Any) -> Any:
    """``call()``; a missing object, a refused credential or a failed request named as a
    SourceError (tried once: the same naming as the remote source, without its retries)."""
    return with_retries(what, call, retries=1, backoff_s=0.0)


def upload(folder: Union[str, Path], url: str, *, storage_options: Optional[dict] = None,
           progress: Optional[TextIO] = None) -> None:
    """Copy the converted dataset in ``folder`` to ``url``: shards and indexes, manifest last.
    A URL that already holds another dataset's manifest is refused."""
    folder, url = Path(folder), url.rstrip("/")
    manifest = read_manifest(folder)
    if manifest.format != "tfrecord":
        raise SourceError(f"{url}: only TFRecord shards are read from a URL (an LMDB needs a "
                          "local file to map); convert with --format tfrecord")
    fs = filesystem(url, storage_options)
    text = (folder / MANIFEST).read_bytes()
    there = f"{url}/{MANIFEST}"
    if _named(there, lambda: fs.exists(there)):
        if _named(there, lambda: fs.cat_file(there)) == text:
            return  # already uploaded, whole
        raise SourceError(f"{url}: already holds a converted dataset made from other input or "
                          "options; upload to an empty prefix (or delete it first)")
    files = [name for shard in manifest.shards for name in (shard.file, shard.index) if name]
    for k, name in enumerate(files):
        local, remote = folder / name, f"{url}/{name}"
        size = local.stat().st_size
        if _named(remote, lambda: fs.exists(remote) and fs.size(remote) == size):
            continue  # a previous run's, whole (a PUT is atomic)
        _named(remote, lambda: fs.put_file(str(local), remote))
        if progress is not None:
            print(f"\ruploaded {k + 1}/{len(files)} files", end="", file=progress, flush=True)
    _named(there, lambda: fs.pipe_file(there, text))
    if progress is not None:
        print(file=progress)


def verify_url(url: str, *, storage_options: Optional[dict] = None) -> Any:
    """``verify.verify`` for a dataset at a URL, one shard at a time in a temporary folder."""
    from .verify import VerifyReport, check_shard

    url = url.rstrip("/")
    fs = filesystem(url, storage_options)
    where = f"{url}/{MANIFEST}"
    text = _named(where, lambda: fs.cat_file(where))
    manifest = parse_manifest(text.decode("utf-8", "replace"), where)
    report = VerifyReport(url, manifest.format, len(manifest.shards))
    if manifest.format != "tfrecord":
        report.errors.append(f"{url}: holds {manifest.format} shards; only TFRecord is read "
                             "from a URL")
        return report
    with tempfile.TemporaryDirectory(prefix="fastload-verify-") as tmp:
        for k, shard in enumerate(manifest.shards):
            try:
                for name in (shard.file, shard.index):
                    if name:
                        _named(f"{url}/{name}", lambda: fs.get_file(f"{url}/{name}",
                                                                    str(Path(tmp) / name)))
                report.records += check_shard(Path(tmp), manifest, k, shard)
            except SourceError as exc:
                report.errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - verify reports every problem it finds
                report.errors.append(str(exc).replace(str(tmp), url))
            finally:
                for path in Path(tmp).iterdir():
                    path.unlink()
    return report


def index_url(url: str, *, storage_options: Optional[dict] = None) -> str:
    """Write ``<url>.idx`` for the TFRecord object at ``url``; returns its URL."""
    from .verify import build_index

    fs = filesystem(url, storage_options)
    with tempfile.TemporaryDirectory(prefix="fastload-index-") as tmp:
        local = Path(tmp) / url.rstrip("/").rsplit("/", 1)[-1]
        _named(url, lambda: fs.get_file(url, str(local)))
        out = build_index(local)
        target = f"{url}.idx"
        _named(target, lambda: fs.put_file(str(out), target))
    return target
