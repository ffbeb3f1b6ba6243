"""``fastload verify``: check every shard and record of a converted dataset against its manifest."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from ..errors import FastloadError, SourceError
from ..formats import protowire
from ..formats import tfrecord
from ..formats.caffe_lmdb import check_datum, shared_env
from ..formats.manifest import MANIFEST, Manifest, ShardInfo, read_manifest


@dataclass
class VerifyReport:
    folder: str
    format: str
    shards: int
    records: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        head = f"{self.folder}: {self.format}, {self.shards} shards, {self.records} records checked"
        if self.ok:
            return f"{head}: OK"
        return "\n".join([f"{head}: {len(self.errors)} problem(s)"] + [f"  {e}" for e in self.errors])


def verify(folder: Union[str, Path]) -> VerifyReport:
    """Re-read every record: framing and CRCs, message parsing, counts, keys and checksums."""
    folder = Path(folder)
    if folder.is_dir() and not (folder / MANIFEST).exists():
        raise SourceError(f"{folder}: no {MANIFEST} here: verify checks what `fastload convert` "
                          "wrote. A folder of images (or shards written elsewhere) is read as it "
                          f"is; to verify, convert it first: `fastload convert {folder} "
                          "<shards folder>`, then `fastload verify <shards folder>`")
    manifest = read_manifest(folder)
    report = VerifyReport(str(folder), manifest.format, len(manifest.shards))
    for k, shard in enumerate(manifest.shards):
        try:
            report.records += check_shard(folder, manifest, k, shard)
        except FastloadError as exc:
            report.errors.append(str(exc))
        except OSError as exc:
            report.errors.append(f"{folder / shard.file}: {exc.strerror or exc}")
    return report


def check_shard(folder: Path, manifest: Manifest, k: int, shard: ShardInfo) -> int:
    """Check shard ``k`` (in ``folder``) against the manifest; returns its record count."""
    check = {"tfrecord": _check_tfrecord, "lmdb": _check_lmdb,
             "webdataset": _check_webdataset}[manifest.format]
    return check(folder, manifest, k, shard)


def _expect(where: Path, what: str, got: object, want: object) -> None:
    if got != want:
        raise FastloadError(f"{where}: {what} is {got}, the manifest says {want}")


def _check_tfrecord(folder: Path, manifest: Manifest, k: int, shard: ShardInfo) -> int:
    path = folder / shard.file
    data = path.read_bytes()
    _expect(path, "size", len(data), shard.bytes)
    _expect(path, "sha256", hashlib.sha256(data).hexdigest(), shard.sha256)
    rows = tfrecord.scan(path)
    _expect(path, "record count", len(rows), shard.records)
    index = tfrecord.read_index(folder / (shard.index or tfrecord.index_path(path).name), path)
    if index.shape != rows.shape or not (index == rows).all():
        raise FastloadError(f"{path}: its index does not match the records (the shard itself "
                            f"reads whole); rebuild the index with `fastload index {path}`")
    for r, (offset, length) in enumerate(rows.tolist()):
        where = f"{path} record {r} (offset {offset})"
        example = protowire.decode_example(tfrecord.unframe(data[offset:offset + length], where))
        if not example.get("image/encoded") or not example.get("image/class/label"):
            raise FastloadError(f"{where}: Example lacks image/encoded or image/class/label")
    return len(rows)


def _check_webdataset(folder: Path, manifest: Manifest, k: int, shard: ShardInfo) -> int:
    """Size and sha256, then every member header; each sample a key of the striped layout with
    one image and a class index."""
    from ..formats import tar

    path = folder / shard.file
    data = path.read_bytes()
    _expect(path, "size", len(data), shard.bytes)
    _expect(path, "sha256", hashlib.sha256(data).hexdigest(), shard.sha256)
    expected = [str(i).zfill(manifest.key_width)
                for i in range(k, manifest.samples, len(manifest.shards))]
    fields: dict[str, set] = {}
    with open(path, "rb") as f:
        for member in tar.members(f, str(path)):
            key, _, field = member.name.partition(".")
            fields.setdefault(key, set()).add(field)
            if field == "cls" and not data[member.offset:member.offset + member.size].isdigit():
                raise FastloadError(f"{path}: sample {key!r}: its label is not a class index")
    if list(fields) != expected:
        raise FastloadError(f"{path}: holds samples {list(fields)[:4]}..., the striped layout "
                            f"needs {expected[:4]}...")
    for key, found in fields.items():
        if "cls" not in found or len(found & {"jpg", "png", "webp", "bmp", "tiff", "gif"}) != 1:
            raise FastloadError(f"{path}: sample {key!r} has members {sorted(found)}, needs one "
                                "image and a cls")
    return len(fields)


def _check_lmdb(folder: Path, manifest: Manifest, k: int, shard: ShardInfo) -> int:
    path = folder / shard.file
    _expect(path, "data.mdb size", (path / "data.mdb").stat().st_size, shard.bytes)
    expected = [str(i).zfill(manifest.key_width).encode()
                for i in range(k, manifest.samples, len(manifest.shards))]
    digest, count = hashlib.sha256(), 0
    with shared_env(os.path.realpath(path)).begin(buffers=False) as txn:
        for key, value in txn.cursor():
            if count >= len(expected) or key != expected[count]:
                raise FastloadError(f"{path}: unexpected key {key!r} at record {count}")
            check_datum(value, f"{path} key {key!r}")
            digest.update(key + b"\0" + value)
            count += 1
    _expect(path, "record count", count, shard.records)
    _expect(path, "sha256", digest.hexdigest(), shard.sha256)
    return count


def build_index(path: Union[str, Path]) -> Path:
    """Write ``<path>.idx`` for a TFRecord file (the format DALI and the tfrecord package use)."""
    if not Path(path).is_file():
        raise SourceError(f"{path}: no such TFRecord file (give the shard files themselves, "
                          "e.g. shards/*.tfrecord)")
    try:
        rows = tfrecord.scan(path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    out = tfrecord.index_path(path)
    tfrecord.write_index(rows, out)
    return out
