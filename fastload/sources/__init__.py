"""Sources give encoded bytes + label by sample index: folder, list file, TFRecord, WebDataset
and Parquet (local or at a URL), LMDB, a Hugging Face dataset; subsets, splits and mixtures of
any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from ..errors import SourceError
from ..formats.manifest import MANIFEST, read_manifest
from .base import DatasetSource, Source, StringTable
from .folder import FolderSource
from .hf_dataset import HFDatasetSource, is_hf_dataset
from .listing import ListSource
from .lmdb import LMDBSource
from .mask_folder import MaskFolderSource
from .parquet import ParquetSource
from .remote import RemoteTFRecordSource, is_url
from .tfrecord import TFRecordSource
from .webdataset import WebDatasetSource

__all__ = ["DatasetSource", "FolderSource", "HFDatasetSource", "LMDBSource", "ListSource",
           "MaskFolderSource", "ParquetSource", "RemoteTFRecordSource", "Source", "StringTable", "TFRecordSource",
           "WebDatasetSource", "open_source"]

KINDS = {"folder": FolderSource, "tfrecord": TFRecordSource, "lmdb": LMDBSource,
         "list": ListSource, "webdataset": WebDatasetSource, "parquet": ParquetSource}
LIST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".txt")


def open_source(source: Union[str, Path, Any]) -> Source:
    """A Source object as is; a Hugging Face ``datasets.Dataset`` (``HFDatasetSource``); a
    map-style dataset of ``(encoded bytes, label)`` items wrapped as a ``DatasetSource``; or a
    path, optionally prefixed ``folder:``, ``tfrecord:``, ``lmdb:``, ``list:``, ``webdataset:``,
    ``parquet:``.

    A URL (``s3://bucket/prefix``, ``gs://``, ``https://``: any fsspec URL but ``file://``)
    ending in ``.parquet`` is a ``ParquetSource``; in ``.tar`` (a brace pattern too), a
    ``WebDatasetSource``; otherwise a converted TFRecord dataset read remotely
    (``RemoteTFRecordSource``). Pass a source made with ``storage_options=`` for credentials or
    an endpoint.

    Unprefixed paths are detected: a folder with ``manifest.json`` (its format), an LMDB
    environment (``data.mdb``), a list file (``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson``,
    ``.txt``: ``ListSource``), ``.parquet`` files (a file, a glob, or a folder of them and
    nothing else: ``ParquetSource``), ``.tar`` shards (a file, a glob or brace pattern ending in
    ``.tar``, or a folder of them: ``WebDatasetSource``), a ``.tfrecord`` file or glob, a folder
    of ``.tfrecord`` files, otherwise an ImageFolder. ``list:PATH`` reads any file as a list,
    ``webdataset:PATTERN`` any pattern as tar shards.
    """
    if not isinstance(source, (str, Path)):
        if isinstance(source, Source):
            return source
        if is_hf_dataset(source):
            return HFDatasetSource(source)
        if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
            return DatasetSource(source)
        raise SourceError(f"source={source!r:.200} must be a path, a Source (len, "
                          "read(i) -> (bytes, label), describe(), locate(i)) or a map-style "
                          "dataset of (encoded image bytes, label) items")
    text = str(source)
    if isinstance(source, str) and is_url(text):
        if text.endswith(".parquet"):
            return ParquetSource(text)
        if text.endswith(".tar"):
            return WebDatasetSource(text)
        return RemoteTFRecordSource(text)
    kind, sep, rest = text.partition(":")
    if sep and kind in KINDS and rest:
        return KINDS[kind](rest)
    path = Path(text)
    if text.endswith(".tar") and not path.is_dir():  # a shard, a glob or a brace pattern
        return WebDatasetSource(text)
    if text.endswith(".parquet") and not path.is_dir():
        return ParquetSource(text)
    if any(c in text for c in "*?[") and not path.exists():
        return TFRecordSource(text)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name == MANIFEST:
            path = path.parent
        elif path.suffix.lower() in LIST_SUFFIXES:
            return ListSource(path)
        else:
            return TFRecordSource(path)
    if (path / MANIFEST).exists():
        return KINDS[read_manifest(path).format](path)
    if (path / "data.mdb").exists():
        return LMDBSource(path)
    if any(p.name.endswith(".tfrecord") for p in path.iterdir()):
        return TFRecordSource(path)
    entries = list(path.iterdir())
    if any(p.name.endswith(".parquet") for p in entries) and \
            not any(p.is_dir() and not p.name.startswith(".") for p in entries):
        return ParquetSource(path)  # Parquet files, and no class folders beside them
    if any(p.name.endswith(".tar") and p.is_file() for p in entries) and \
            not any(p.is_dir() and not p.name.startswith(".") for p in entries):
        return WebDatasetSource(path)  # tar shards, and no class folders beside them
    return FolderSource(path)
