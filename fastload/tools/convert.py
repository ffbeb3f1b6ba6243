"""``fastload convert``: any source (an ImageFolder, a list file, TFRecord, LMDB, WebDataset or
Parquet shards, a Hugging Face dataset) -> TFRecord, LMDB or WebDataset shards that TF, DALI,
Caffe and webdataset read.

- Layout "striped": sample ``i`` goes to shard ``i % S`` (every shard holds every class, and
  global indices stay the folder's), records in increasing ``i``.
- Atomic: each shard is written under a temporary name and renamed when complete; the
  manifest is written last. A progress file records each finished shard with a fingerprint of
  its inputs (options, each sample's file or place, size and label, the input shards' sizes
  and times), so re-running after an interruption skips the shards whose inputs did not
  change.
- Deterministic: the same folder and options give the same bytes (TFRecord) / records (LMDB).
- Targets (a label list, a mask, boxes, fields): TFRecord keeps them under the keys
  TensorFlow's models read (``sources.tfrecord``), WebDataset as ``cls``/``seg.png``/``json``
  members; LMDB's Caffe Datum holds one label, so a source with targets is refused there.
- Every image is decoded once on the way (JPEGs at 1/8 scale, enough to walk all their data),
  so a broken file fails the conversion with its path instead of failing training later.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import errno
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TextIO, Union

import numpy as np
from PIL import Image

from ..errors import DecodeError, FastloadError, SourceError, SpecError
from ..formats import protowire
from ..formats import tfrecord
from ..formats.manifest import EXTENSIONS, FORMATS, MANIFEST, Manifest, ShardInfo
from ..image_info import open_image
from ..target_info import PNG_SIGNATURE, TARGET_KEYS, check_boxes, decode_mask, split_read
from ..per_process import forking
from ..sources import Source, open_source
from ..sources.tfrecord import BOXES_KEY, CORNERS, FIELDS_KEY, MASK_KEY
from .output import (PROGRESS, claimed, load_progress, remove_temporary, save_progress,
                     temporary)
from .progress import Progress
from .restarts import with_restarts

DEFAULT_SHARD_BYTES = 128 << 20
LMDB_PAGE = 4096
TARGET_FORMATS = ("tfrecord", "webdataset")  # what holds a label list, a mask, boxes, fields


@dataclass(frozen=True)
class ConvertOptions:
    format: str = "tfrecord"
    shards: Optional[int] = None        # shard count; or derived from shard_bytes
    shard_bytes: Optional[int] = None   # target shard size (from the source files' sizes)
    max_size: Optional[int] = None      # re-encode images whose longer side exceeds this
    quality: Optional[int] = None       # re-encode every image as JPEG at this quality
    split: str = "train"
    restarts: bool = True               # JPEGs rewritten losslessly with restart markers

    def check(self) -> None:
        if self.format not in FORMATS:
            raise SpecError(f"convert: format={self.format!r} must be one of {FORMATS}")
        for name in ("shards", "shard_bytes", "max_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SpecError(f"convert: {name}={value!r} must be a positive int")
        if self.quality is not None and not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise SpecError(f"convert: quality={self.quality!r} must be an int in [1, 100]")
        if self.shards is not None and self.shard_bytes is not None:
            raise SpecError("convert: give shards or shard_bytes, not both")
        if not self.split or "/" in self.split:
            raise SpecError(f"convert: split={self.split!r} must be a plain name like 'train'")


def shard_name(options: ConvertOptions, k: int, count: int) -> str:
    return f"{options.split}-{k:05d}-of-{count:05d}.{EXTENSIONS[options.format]}"


def convert(src: Union[str, Path, Any], dst: Union[str, Path], *, format: str = "tfrecord",
            shards: Optional[int] = None, shard_bytes: Optional[int] = None,
            max_size: Optional[int] = None, quality: Optional[int] = None, split: str = "train",
            restarts: bool = True, workers: Optional[int] = None, progress: Optional[TextIO] = None,
            storage_options: Optional[dict] = None,
            staging: Optional[Union[str, Path]] = None) -> Manifest:
    """Convert ``src`` into shards under ``dst``; returns the manifest. ``src`` is anything
    ``fl.loader`` reads (``sources.open_source``): a path (ImageFolder, list file, TFRecord,
    LMDB, WebDataset or Parquet shards, a URL), a Source, a ``datasets.Dataset``. Sample ``i`` of
    the output is sample ``i`` of ``src``, with its image and label.

    ``restarts``: rewrite each JPEG with a restart marker every few MCUs, losslessly (the same
    DCT coefficients, so the same pixels; ``fastload._jpeg.add_restarts``); a crop is then
    decoded from the restart segments it covers only (631 -> 514 us per RandomResizedCrop
    box on real photographs), and the shards grow ~1.5%. Needs the
    ``fastload._jpeg`` extension; without it the bytes are copied as they are.
    ``progress``: a stream for a progress line (``sys.stderr`` in the CLI), or None for silence.
    ``dst`` may be a URL (``s3://bucket/prefix``; TFRecord only): the shards are made in the
    local folder ``staging`` (default ``./.fastload-staging-<digest of dst>``; a re-run resumes
    there), uploaded with the manifest last (``remote_dataset.upload``), and the staging
    folder is removed. ``storage_options`` go to fsspec.
    """
    from ..sources.remote import is_url

    if is_url(str(dst)):
        from .remote_dataset import upload

        if format != "tfrecord":
            raise SourceError(f"{dst}: only TFRecord shards are read from a URL (an LMDB needs a "
                              "local file to map); pass format='tfrecord'")
        digest = hashlib.sha256(str(dst).encode()).hexdigest()[:12]
        local = Path(staging) if staging is not None else Path(f".fastload-staging-{digest}")
        manifest = convert(src, local, format=format, shards=shards, shard_bytes=shard_bytes,
                           max_size=max_size, quality=quality, split=split, restarts=restarts,
                           workers=workers, progress=progress)
        upload(local, str(dst), storage_options=storage_options, progress=progress)
        shutil.rmtree(local)
        return manifest
    options = ConvertOptions(format, shards, shard_bytes, max_size, quality, split, restarts)
    options.check()
    source = open_source(src)
    dst = Path(dst)
    try:
        dst.mkdir(parents=True, exist_ok=True)
        probe = dst / f".fastload-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SourceError(f"{dst}: cannot write here: {exc.strerror or exc}") from None
    with claimed(dst) as run:
        return _convert(source, options, dst, run, workers, progress)


def _convert(source: Source, options: ConvertOptions, dst: Path, run: str,
             workers: Optional[int], progress: Optional[TextIO]) -> Manifest:
    """The conversion itself, with ``dst`` claimed by this run (``run``: its token)."""
    sizes = _sizes(source)
    inputs = _input_files(source)
    count = _shard_count(options, len(source), _input_bytes(source, sizes, inputs))
    whole = _input_stamp(source, inputs, sizes)
    prints = [_fingerprint(source, sizes, whole, options, count, k) for k in range(count)]
    fingerprint = hashlib.sha256("".join(prints).encode()).hexdigest()
    existing = dst / MANIFEST
    if existing.exists():
        done = json.loads(existing.read_text()).get("options", {})
        if done.get("fingerprint") == fingerprint:
            from ..formats.manifest import read_manifest

            return read_manifest(dst)
        raise SourceError(f"{dst}: already holds a converted dataset made from other input or "
                          "options; convert into an empty folder (or delete it first)")
    targets = targets_of(source, options)  # refused before any shard is written
    finished = load_progress(dst, prints)
    jobs = [(k, count) for k in range(count) if k not in finished]
    key_width = max(8, len(str(len(source) - 1)))
    context = _Job(source, options, str(dst), key_width, run)
    nproc = max(1, min(workers or len(os.sched_getaffinity(0)), len(jobs) or 1))
    already = sum(finished[k].records for k in finished)
    with Progress(progress, len(source), "images", already) as meter:
        if nproc == 1 or len(jobs) <= 1:
            context.tick = meter.add
            for job in jobs:
                finished[job[0]] = context(job)
                save_progress(dst, prints, finished)
        else:
            for k, info in _pool_shards(context, jobs, nproc, meter):
                finished[k] = info
                save_progress(dst, prints, finished)
    manifest = Manifest(format=options.format, samples=len(source),
                        classes=list(getattr(source, "classes", None) or []),
                        shards=[finished[k] for k in range(count)], split=options.split,
                        key_width=key_width,
                        options={**asdict(options), "shards": count, "fingerprint": fingerprint},
                        targets=targets)
    manifest.write(dst)
    (dst / PROGRESS).unlink(missing_ok=True)
    return manifest


def targets_of(source: Source, options: ConvertOptions) -> dict[str, Any]:
    """What the samples carry besides one class index, for the manifest (``{}``: nothing);
    a SpecError when the format cannot hold it (LMDB's Caffe Datum holds one label)."""
    first = source.read(0)
    extras = first[2] if len(first) == 3 else {}
    multi = bool(getattr(source, "multi_label", False))
    if not extras and not multi:
        return {}
    if options.format not in TARGET_FORMATS:
        raise SpecError(f"convert: {source.locate(0)} carries targets besides one class index "
                        f"(a label list, a mask, boxes or fields), which {options.format} shards "
                        "do not hold (a Caffe Datum has one label); use --format tfrecord or "
                        "--format webdataset")
    if options.max_size is not None and ("mask" in extras or "boxes" in extras):
        raise SpecError("convert: max_size would resize images but not their masks and boxes; "
                        "convert without --max-size")
    fields = sorted(k for k in extras if k not in TARGET_KEYS)
    return {"multi_label": multi, "num_classes": getattr(source, "num_classes", None),
            "mask": "mask" in extras, "boxes": "boxes" in extras, "fields": fields}


def _shard_count(options: ConvertOptions, samples: int, total_bytes: int) -> int:
    if options.shards is not None:
        count = options.shards
    else:
        count = math.ceil(total_bytes / (options.shard_bytes or DEFAULT_SHARD_BYTES))
    return max(1, min(count, samples))


def _sizes(source: Source) -> Optional[list[int]]:
    """Each sample's file size, for a source of one file a sample (folder, list); else None."""
    path = getattr(source, "path", None)
    if not callable(path):
        return None
    sizes = []
    for i in range(len(source)):
        try:
            sizes.append(os.path.getsize(path(i)))
        except OSError as exc:
            raise SourceError(f"{source.locate(i)}: cannot read: {exc.strerror or exc}") from None
    return sizes


def _input_files(source: Source) -> list[str]:
    """The local files a sharded source reads (its shards, Parquet files, list file)."""
    found = [str(f) for name in ("shards", "files") for f in (getattr(source, name, None) or [])]
    if getattr(source, "list_path", None) is not None:
        found.append(str(source.list_path))  # type: ignore[attr-defined]
    return [f for f in found if os.path.exists(f)]


def _input_bytes(source: Source, sizes: Optional[list[int]], files: list[str]) -> int:
    """The input's bytes, for the shard count: the files', or a sample of the samples'."""
    if sizes is not None:
        return sum(sizes)
    if files:
        return sum(_du(f) for f in files)
    probe = range(0, len(source), max(1, len(source) // 64))
    return int(sum(len(source.read(i)[0]) for i in probe) / len(probe) * len(source))


def _du(path: str) -> int:
    if os.path.isdir(path):  # an LMDB environment
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    return os.path.getsize(path)


def _name(source: Source, i: int) -> str:
    """Sample ``i``'s name in the output (TFRecord's image/filename): the file's path in the
    folder or list, else where it was (shard and record, row, key)."""
    relative = getattr(source, "relative_path", None)
    return str(relative(i)) if callable(relative) else source.locate(i)


def _input_stamp(source: Source, inputs: list[str], sizes: Optional[list[int]]) -> Any:
    """What identifies the input as a whole: its class names; unless each sample's own file
    is fingerprinted (``sizes``: a folder, a list; the same fingerprint as before other
    sources were converted), also its description and each input file's size and time."""
    classes = getattr(source, "classes", None)
    if sizes is not None:
        return classes
    stats = [(f, os.stat(f)) for f in inputs]
    return [classes, source.describe(), [(f, st.st_size, st.st_mtime_ns) for f, st in stats]]


def _fingerprint(source: Source, sizes: Optional[list[int]], whole: Any,
                 options: ConvertOptions, count: int, k: int) -> str:
    """What shard ``k`` is made from: the options, the input as a whole (``_input_stamp``),
    and each of its samples' name, size and label."""
    digest = hashlib.sha256(json.dumps([asdict(options), count, k, whole], default=str).encode())
    labels = getattr(source, "labels", None)
    for i in range(k, len(source), count):
        label = int(labels[i]) if labels is not None else ""
        size = sizes[i] if sizes is not None else ""
        digest.update(f"{_name(source, i)}\0{size}\0{label}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


_RECORDS: Any = None  # in a pool worker: the shared count of records written


def _pool_init(counter: Any) -> None:
    global _RECORDS
    _RECORDS = counter


def _tick_shared(n: int) -> None:
    with _RECORDS.get_lock():
        _RECORDS.value += n


def _pool_shards(context: "_Job", jobs: list[tuple[int, int]], nproc: int,
                 meter: Progress) -> Iterator[tuple[int, ShardInfo]]:
    """(shard, info) of each job as ``nproc`` processes finish them; the meter follows every
    record, not only whole shards. A worker that dies (the OOM killer, a signal) fails the
    conversion with the shards it left unfinished, instead of waiting for them forever."""
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    counter = ctx.Value("q", 0)
    base = meter.count
    context.tick = _tick_shared
    lost: list[int] = []
    with ProcessPoolExecutor(nproc, mp_context=ctx, initializer=_pool_init,
                             initargs=(counter,)) as pool:
        with forking():  # (the pool forks all its workers at the first submit)
            pending = {pool.submit(_run_job, (context, job)): job[0] for job in jobs}
        try:
            while pending and not lost:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                meter.update(base + counter.value)
                for future in done:
                    shard = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        lost = sorted({shard, *pending.values()})
                        break
                    yield result
        finally:
            for future in pending:
                future.cancel()
    if lost:  # the pool is shut down: no worker is writing any more
        names = [shard_name(context.options, k, jobs[0][1]) for k in lost]
        for name in names:
            remove_temporary(Path(context.dst), name, context.run)
        raise FastloadError(
            f"convert: a worker process died (killed by a signal, e.g. the out-of-memory "
            f"killer) while writing {', '.join(names[:4])}{' ...' if len(names) > 4 else ''} in "
            f"{context.dst}; the finished shards are kept: re-run the same command to resume "
            "(with --workers 1 if memory is short)")


def _run_job(arg: tuple["_Job", tuple[int, int]]) -> tuple[int, ShardInfo]:
    context, job = arg
    return job[0], context(job)


class _Job:
    """Writes one shard; picklable (the source carries its own index)."""

    def __init__(self, source: Source, options: ConvertOptions, dst: str, key_width: int,
                 run: str) -> None:
        self.source, self.options, self.dst, self.key_width = source, options, dst, key_width
        self.run = run  # this conversion's token, in its temporary names
        self.tick: Callable[[int], Any] = lambda n: None  # called once per record written

    def __call__(self, job: tuple[int, int]) -> ShardInfo:
        k, count = job
        name = shard_name(self.options, k, count)
        indices = range(k, len(self.source), count)
        try:
            if self.options.format == "tfrecord":
                return self._tfrecord(name, indices)
            if self.options.format == "webdataset":
                return self._webdataset(name, indices)
            return self._lmdb(name, indices)
        except Exception as exc:
            remove_temporary(Path(self.dst), name, self.run)
            if not _is_write_error(exc):
                raise
            need = self._budget(indices, pages=self.options.format == "lmdb")
            free = shutil.disk_usage(self.dst).free
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT) or free < need:
                raise FastloadError(
                    f"convert: {self.dst} is full: writing {name} needs about {need} bytes "
                    f"and {free} are free; free some space (or convert elsewhere) and re-run "
                    "the same command: the finished shards are kept") from None
            raise FastloadError(f"convert: cannot write {Path(self.dst) / name}: {exc}") from None

    def _budget(self, indices: range, pages: bool = False) -> int:
        """The bytes of the files shard ``indices`` is made from (0 when not known); with
        ``pages``, as LMDB stores them: each value in whole 4 KiB overflow pages, plus one."""
        path = getattr(self.source, "path", None)
        if not callable(path):
            return 0
        sizes = [os.path.getsize(path(i)) for i in indices]
        return sum((size // LMDB_PAGE + 2) * LMDB_PAGE for size in sizes) if pages else sum(sizes)

    def _payloads(self, indices: range):
        for i in indices:
            where = self.source.locate(i)
            data, label, extras = split_read(self.source.read(i), where)
            if (extras or isinstance(label, (list, tuple))) and \
                    self.options.format not in TARGET_FORMATS:
                raise SpecError(f"convert: {where} carries targets besides one class index, "
                                f"which {self.options.format} shards do not hold; use --format "
                                "tfrecord or --format webdataset")
            data, fmt, height, width = prepare_image(data, where, self.options.max_size,
                                                     self.options.quality, self.options.restarts)
            yield i, data, label, fmt, height, width, checked_targets(extras, (height, width), where)
            self.tick(1)

    def _tfrecord(self, name: str, indices: range) -> ShardInfo:
        final = Path(self.dst) / name
        tmp = temporary(final, self.run)
        digest, rows, offset = hashlib.sha256(), [], 0
        with open(tmp, "wb") as f:
            for i, data, label, fmt, height, width, targets in self._payloads(indices):
                example = protowire.encode_example({
                    "image/encoded": data,
                    "image/class/label": np.asarray(label, np.int64) if isinstance(label, list)
                    else label,
                    "image/filename": _name(self.source, i).encode("utf-8", "surrogateescape"),
                    "image/format": fmt.encode(), "image/height": height, "image/width": width,
                    **_features_of(targets, (height, width))})
                framed = tfrecord.frame(example)
                f.write(framed)
                digest.update(framed)
                rows.append((offset, len(framed)))
                offset += len(framed)
            f.flush()
            os.fsync(f.fileno())
        tfrecord.write_index(np.asarray(rows, dtype=np.int64).reshape(-1, 2), tfrecord.index_path(final))
        os.replace(tmp, final)
        return ShardInfo(file=name, records=len(rows), bytes=offset, sha256=digest.hexdigest(),
                         index=tfrecord.index_path(final).name)

    def _webdataset(self, name: str, indices: range) -> ShardInfo:
        """``<key>.jpg`` (or ``.png``...) and ``<key>.cls`` members (several classes: ``3 7``;
        none: ``-1``), key = the zero-padded global sample index, with the targets: the mask as
        ``<key>.seg.png``, boxes and fields in ``<key>.json``; fixed member metadata, so the
        same input gives the same bytes."""
        import tarfile

        final = Path(self.dst) / name
        tmp = temporary(final, self.run)
        records = 0
        with open(tmp, "wb") as f:
            hashed = _Hashing(f)  # the digest as the bytes go out, not a second read
            with tarfile.open(fileobj=hashed, mode="w", format=tarfile.USTAR_FORMAT) as out:
                for i, data, label, fmt, _, _, targets in self._payloads(indices):
                    key = str(i).zfill(self.key_width)
                    ext = "jpg" if fmt == "jpeg" else fmt
                    text = " ".join(map(str, label)) if isinstance(label, list) else str(label)
                    for member, payload in ((f"{key}.{ext}", data), (f"{key}.cls", text.encode()),
                                            *((f"{key}.{m}", b) for m, b in _members_of(targets))):
                        info = tarfile.TarInfo(member)
                        info.size, info.mode, info.mtime = len(payload), 0o644, 0
                        out.addfile(info, io.BytesIO(payload))
                    records += 1
            f.flush()
            os.fsync(f.fileno())
        digest, size = hashed.digest, hashed.size
        os.replace(tmp, final)
        return ShardInfo(file=name, records=records, bytes=size, sha256=digest.hexdigest())

    def _lmdb(self, name: str, indices: range) -> ShardInfo:
        import lmdb

        final = Path(self.dst) / name
        tmp = temporary(final, self.run)
        shutil.rmtree(tmp, ignore_errors=True)
        # the map is address space, the file grows only as written: room to spare is free
        budget = self._budget(indices) or (32 << 30)
        map_size = 2 * budget + (len(indices) + 64) * 4096 + (64 << 20)
        digest, records = hashlib.sha256(), 0
        # meminit: zero the unused tails of pages, so equal input gives byte-equal files
        env = lmdb.open(str(tmp), map_size=map_size, subdir=True, lock=True, sync=True,
                        meminit=True, max_dbs=0)
        try:
            with env.begin(write=True) as txn:
                for i, data, label, *_ in self._payloads(indices):
                    key = str(i).zfill(self.key_width).encode()
                    value = protowire.encode_datum(data, label)
                    txn.put(key, value, append=True)
                    digest.update(key + b"\0" + value)
                    records += 1
            env.sync(True)
        finally:
            env.close()
        (tmp / "lock.mdb").unlink(missing_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return ShardInfo(file=name, records=records, bytes=(final / "data.mdb").stat().st_size,
                         sha256=digest.hexdigest())


class _Hashing:
    """A file to write through that keeps the sha256 and the count of what was written."""

    def __init__(self, f: Any) -> None:
        self.f, self.digest, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size


def _is_write_error(exc: BaseException) -> bool:
    """An error of the output's filesystem (not of an input image): OSError while writing, or
    LMDB's own error (``mdb_txn_commit: Input/output error`` on a full disk)."""
    if isinstance(exc, FastloadError):
        return False
    return isinstance(exc, OSError) or type(exc).__module__.startswith("lmdb")


def checked_targets(extras: dict[str, Any], size: tuple[int, int], where: str) -> dict[str, Any]:
    """A sample's targets checked against its image's ``size`` (h, w), as the shards keep them:
    ``mask`` (PNG bytes: the mask's own, or an array encoded), ``boxes`` ((N, 4) float64 pixels)
    with ``box_labels``, and ``fields`` (name -> value, plain JSON types)."""
    out: dict[str, Any] = {}
    if extras.get("mask") is not None:
        mask = extras["mask"]
        array = decode_mask(mask, size, where)  # a bad mask stops the job, named
        if not isinstance(mask, (bytes, bytearray, memoryview)) or \
                bytes(mask[:8]) != PNG_SIGNATURE:
            encoded = io.BytesIO()
            Image.fromarray(array, "L").save(encoded, format="PNG")
            mask = encoded.getvalue()
        out["mask"] = bytes(mask)
    if extras.get("boxes") is not None:
        out["boxes"], out["box_labels"] = check_boxes(extras["boxes"], extras.get("box_labels"),
                                                      size, where)
    fields = {name: value.tolist() if hasattr(value, "tolist") else value
              for name, value in extras.items() if name not in TARGET_KEYS}
    if fields:
        out["fields"] = fields
    return out


def _members_of(targets: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Checked targets as WebDataset members: ``seg.png`` and ``json`` (boxes as [[x0, y0, x1,
    y1, label], ...] and the fields)."""
    members = [("seg.png", targets["mask"])] if "mask" in targets else []
    record = dict(targets.get("fields", {}))
    if "boxes" in targets:
        record["boxes"] = [[*map(float, b), int(c)]
                           for b, c in zip(targets["boxes"], targets["box_labels"])]
    if record:
        members.append(("json", json.dumps(record, sort_keys=True).encode()))
    return members


def _features_of(targets: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """Checked targets as tf.train.Example features, under the keys TensorFlow's models read:
    DeepLab's mask, the Object Detection API's boxes (corners normalized by the image's width
    and height, float32) and labels; the fields as one JSON object (exact, any shape)."""
    features: dict[str, Any] = {}
    if "mask" in targets:
        features[MASK_KEY] = targets["mask"]
        features["image/segmentation/class/format"] = b"png"
    if "boxes" in targets:
        height, width = size
        normalized = targets["boxes"] / np.array([width, height, width, height], np.float64)
        for k, corner in enumerate(CORNERS):
            features[f"{BOXES_KEY}/bbox/{corner}"] = normalized[:, k].astype(np.float32)
        features[f"{BOXES_KEY}/class/label"] = np.asarray(targets["box_labels"], np.int64)
    if "fields" in targets:
        features[FIELDS_KEY] = json.dumps(targets["fields"], sort_keys=True).encode()
    return features


def prepare_image(data: bytes, where: str, max_size: Optional[int], quality: Optional[int],
                  restarts: bool = False) -> tuple[bytes, str, int, int]:
    """Check that ``data`` decodes; re-encode as JPEG when asked; JPEGs get restart markers
    when ``restarts``. -> (bytes, format, h, w)."""
    img = open_image(data, where)
    fmt = (img.format or "unknown").lower()
    width, height = img.size
    shrink = max_size is not None and max(width, height) > max_size
    try:
        if not shrink and quality is None:
            if fmt == "jpeg":
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            img.load()
            return with_restarts(data) if restarts and fmt == "jpeg" else data, fmt, height, width
        img = img.convert("RGB")
        if shrink:
            scale = max_size / max(width, height)  # type: ignore[operator]
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
            img = img.resize((width, height), Image.BICUBIC, reducing_gap=3.0)
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality or 90)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"{where}: cannot decode image ({type(exc).__name__}: {exc}); fix or "
                          "remove the file, then re-run the conversion (finished shards are kept)") from None
    data = out.getvalue()
    return with_restarts(data) if restarts else data, "jpeg", height, width
