"""``manifest.json``: what a converted dataset holds, written last and atomically.

Layout "striped": with S shards, global sample ``i`` is record ``i // S`` of shard ``i % S``, so
every shard holds every class and global indices equal the source folder's indices.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import FormatError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2  # 2: with "digest"; 1 (no digest: an edit cannot be told) is refused
FORMATS = ("tfrecord", "lmdb", "webdataset")
EXTENSIONS = {"tfrecord": "tfrecord", "lmdb": "lmdb", "webdataset": "tar"}


def content_digest(data: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its ``digest``: written by ``convert``,
    checked by every reader, so an edited manifest (shards reordered, a class dropped) is named
    instead of obeyed."""
    body = {key: value for key, value in data.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    file: str                    # name relative to the dataset folder
    records: int
    bytes: int                   # the shard file's size (LMDB: data.mdb)
    sha256: str                  # TFRecord: of the file; LMDB: of its keys and values in order
    index: Optional[str] = None  # TFRecord: the .idx file's name


@dataclass(frozen=True)
class Manifest:
    format: str
    samples: int
    classes: list[str]
    shards: list[ShardInfo]
    split: str = "train"
    layout: str = "striped"
    key_width: int = 8           # LMDB keys: zero-padded global index of this many digits
    options: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION
    # what the samples carry besides one class index (TFRecord, WebDataset): multi_label,
    # num_classes, mask, boxes, fields; absent from the file when nothing
    targets: dict[str, Any] = field(default_factory=dict)

    def shard_of(self, index: int) -> tuple[int, int]:
        """(shard number, record number in it) of global sample ``index``."""
        count = len(self.shards)
        return index % count, index // count

    def to_json(self) -> str:
        data = asdict(self)
        if not data["targets"]:  # a dataset of one class index a sample: 0.2.0's manifest
            del data["targets"]
        data["digest"] = content_digest(data)
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    def write(self, folder: Union[str, Path]) -> Path:
        path = Path(folder) / MANIFEST
        tmp = path.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)
        return path


def read_manifest(folder: Union[str, Path]) -> Manifest:
    """Parse and check ``folder/manifest.json``; FormatError names the file and the problem."""
    path = Path(folder) / MANIFEST
    try:
        text = path.read_text()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_manifest(text, str(path))


def parse_manifest(text: str, path: str) -> Manifest:
    """A manifest's JSON text (read from ``path``, a file or a URL) -> Manifest, checked."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc}); re-run `fastload convert`") from None
    try:
        if data["version"] == 1:
            raise FormatError(f"{path}: manifest version 1 carries no digest, so an edit to it "
                              "(classes, shards, counts) cannot be told from the conversion; "
                              "re-run `fastload convert` into a new folder")
        if data["version"] != MANIFEST_VERSION:
            raise FormatError(f"{path}: manifest version {data['version']!r} is not supported")
        if data.pop("digest", None) != content_digest(data):
            raise FormatError(f"{path}: edited after conversion (its digest does not match its "
                              "content: shards, classes, counts); restore it or re-run "
                              "`fastload convert`")
        shards = [ShardInfo(**s) for s in data.pop("shards")]
        manifest = Manifest(shards=shards, **data)
    except (KeyError, TypeError) as exc:
        raise FormatError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None
    if manifest.format not in FORMATS:
        raise FormatError(f"{path}: format {manifest.format!r} is not one of {FORMATS}")
    if not manifest.shards:
        raise FormatError(f"{path}: lists no shards")
    if sum(s.records for s in shards) != manifest.samples:
        raise FormatError(f"{path}: shards hold {sum(s.records for s in shards)} records but "
                          f"samples={manifest.samples}")
    count = len(shards)
    ext = EXTENSIONS[manifest.format]
    for k, shard in enumerate(shards):
        if shard.file != f"{manifest.split}-{k:05d}-of-{count:05d}.{ext}":
            raise FormatError(f"{path}: shard {k} is {shard.file!r}, out of place (shard k of "
                              f"the striped layout is {manifest.split}-<k>-of-{count:05d}.{ext}); "
                              "restore the manifest or re-run `fastload convert`")
        expect = len(range(k, manifest.samples, count))
        if manifest.layout == "striped" and shard.records != expect:
            raise FormatError(f"{path}: shard {shard.file} lists {shard.records} records; the "
                              f"striped layout needs {expect}")
    return manifest
