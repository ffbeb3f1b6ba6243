"""TFRecord shards of tf.train.Example, read by random access through their ``.idx`` files.

Targets beyond one class index (``backends.targets``) use the keys TensorFlow's own models
read: ``multi_label=True`` (with ``num_classes``) takes every value of the label's Int64List;
``mask_key`` names a feature holding the encoded mask (DeepLab's
``image/segmentation/class/encoded``); ``boxes_key`` a prefix under which the Object Detection
API keeps boxes, ``<prefix>/bbox/xmin``, ``ymin``, ``xmax``, ``ymax`` (FloatLists normalized
to the image's width and height) and ``<prefix>/class/label``; ``fields={"weight":
"image/weight"}`` per-sample fields from features (one value: a scalar; bytes: a string), or
from a JSON object in a bytes feature (``"fastload/fields:weight"``, where convert keeps them).
Shards made by ``fastload convert`` say in their manifest what they hold, and are read so.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import FormatError, SourceError
from ..formats import protowire
from ..formats import tfrecord
from ..formats.manifest import MANIFEST, Manifest, read_manifest
from ..image_info import image_size
from ..per_process import PerProcess
from .base import open_read_only

try:
    from ..formats import _wire
except ImportError:  # pragma: no cover - the C extension is optional (protowire does the same)
    _wire = None

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
MASK_KEY = "image/segmentation/class/encoded"  # DeepLab's (with image/segmentation/class/format)
BOXES_KEY = "image/object"  # the Object Detection API's: <key>/bbox/xmin ... and <key>/class/label
FIELDS_KEY = "fastload/fields"  # what convert writes: the sample's fields as one JSON object
CORNERS = ("xmin", "ymin", "xmax", "ymax")


class TFRecordSource:
    """Samples from TFRecord shards given as a file, a glob, a folder or a folder's manifest.

    With ``manifest.json`` (what ``fastload convert`` writes) sample ``i`` is record ``i // S``
    of shard ``i % S``; otherwise the shards' records in order, shards sorted by name. Every
    shard needs its index ``<shard>.idx``: a missing one is an error that says how to build it,
    or is built and written when ``build_missing_index=True``.
    """

    def __init__(self, path: Union[str, Path, Sequence[Union[str, Path]]], *,
                 image_key: str = IMAGE_KEY, label_key: str = LABEL_KEY,
                 verify_crc: bool = True, build_missing_index: bool = False,
                 multi_label: bool = False, num_classes: Optional[int] = None,
                 mask_key: Optional[str] = None, boxes_key: Optional[str] = None,
                 fields: Optional[dict[str, str]] = None) -> None:
        self.image_key, self.label_key, self.verify_crc = image_key, label_key, verify_crc
        self._keys = (image_key.encode("utf-8"), label_key.encode("utf-8"))
        self.manifest, shards = _resolve(path)
        self.shards = [str(s) for s in shards]
        self.classes = list(self.manifest.classes) if self.manifest else []
        made = self.manifest.targets if self.manifest is not None else {}
        self.multi_label = bool(multi_label or made.get("multi_label", False))
        self.num_classes = num_classes or made.get("num_classes") or \
            (len(self.classes) if self.multi_label and self.classes else None)
        if self.multi_label and self.num_classes is None:
            raise SourceError(f"{path}: multi_label=True needs num_classes=")
        self.mask_key = mask_key or (MASK_KEY if made.get("mask") else None)
        self.boxes_key = boxes_key or (BOXES_KEY if made.get("boxes") else None)
        self.fields = {**{name: f"{FIELDS_KEY}:{name}" for name in made.get("fields", [])},
                       **(fields or {})}
        self.has_masks = self.mask_key is not None
        box_keys = [f"{self.boxes_key}/bbox/{c}" for c in CORNERS] + \
            [f"{self.boxes_key}/class/label"] if self.boxes_key else []
        self._wanted = frozenset([image_key, label_key, *([self.mask_key] if self.mask_key else []),
                                  *box_keys, *(f.partition(":")[0] for f in self.fields.values())]) \
            if self.multi_label or self.mask_key or self.boxes_key or self.fields else None
        rows = [_load_index(s, build_missing_index) for s in shards]
        self._shard, self._record, self._offset, self._length = record_table(
            self.shards, rows, self.manifest)
        if not len(self._offset):
            raise SourceError(f"{path}: the TFRecord shards hold no records")
        self._files = PerProcess(self._open, os.close)

    def _open(self, shard: int) -> int:
        return open_read_only(self.shards[shard])

    def __len__(self) -> int:
        return len(self._offset)

    def locate(self, index: int) -> str:
        return (f"{self.shards[self._shard[index]]} record {self._record[index]} "
                f"(offset {self._offset[index]}, sample {index})")

    def read_record(self, index: int) -> bytes:
        """The verified payload (a serialized Example) of sample ``index``."""
        fd = self._files.get(int(self._shard[index]))
        length, offset = int(self._length[index]), int(self._offset[index])
        return checked_record(os.pread(fd, length, offset), length, self.locate(index),
                              self.verify_crc)

    def read(self, index: int) -> Any:
        """(bytes, label), or (bytes, label, extras) with the targets asked for (see the module)."""
        if self._wanted is None:
            return image_and_label(self.read_record(index), self._keys, self.locate(index))
        return self._with_targets(self.read_record(index), self.locate(index))

    def _with_targets(self, record: bytes, where: str) -> Any:
        try:
            example = protowire.decode_example(record, self._wanted)
        except FormatError as exc:
            raise FormatError(f"{where}: malformed Example: {exc}") from None

        def feature(key: str) -> list:
            if key not in example:
                raise FormatError(f"{where}: Example lacks {key!r} (has "
                                  f"{sorted(protowire.decode_example(record))})")
            return example[key]  # type: ignore[return-value]

        image = feature(self.image_key)
        if len(image) != 1 or not isinstance(image[0], bytes):
            raise FormatError(f"{where}: {self.image_key!r} must be a BytesList of one image")
        labels = example.get(self.label_key, [] if self.multi_label else None)
        if labels is None or not all(isinstance(v, int) for v in labels) or \
                (not self.multi_label and len(labels) != 1):
            raise FormatError(f"{where}: {self.label_key!r} must be an Int64List of "
                              f"{'class indices' if self.multi_label else 'one class index'}; "
                              f"found {labels!r:.60}")
        label: Any = list(labels) if self.multi_label else labels[0]
        extras: dict[str, Any] = {}
        if self.mask_key:
            mask = feature(self.mask_key)
            if len(mask) != 1 or not isinstance(mask[0], bytes):
                raise FormatError(f"{where}: {self.mask_key!r} must be a BytesList of one "
                                  "encoded mask")
            extras["mask"] = mask[0]
        if self.boxes_key:
            extras["boxes"], extras["box_labels"] = self._boxes(image[0], feature, where)
        parsed: dict[str, Any] = {}  # each JSON feature parsed once, whatever reads from it
        for name, key in self.fields.items():
            extras[name] = _field_value(feature, parsed, key, where)
        return image[0], label, extras

    def _boxes(self, image: bytes, feature: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) float32 pixels from normalized corners, scaled by the image's own size."""
        corners = [np.asarray(feature(f"{self.boxes_key}/bbox/{c}"), np.float64) for c in CORNERS]
        labels = np.asarray(feature(f"{self.boxes_key}/class/label"), np.int64)
        if len({len(c) for c in corners} | {len(labels)}) != 1:
            raise FormatError(f"{where}: {self.boxes_key}/bbox/* and /class/label hold "
                              f"{[len(c) for c in corners]} and {len(labels)} values; give each "
                              "box its four corners and a label")
        width, height = image_size(image, where)
        scale = np.array([width, height, width, height], np.float64)
        boxes = np.stack(corners, axis=1) * scale  # (0, 4) for no boxes
        # a float32 corner at 1.0 may land a hair past the edge: that is the edge
        boxes = np.where((boxes > scale) & (boxes <= scale * (1 + 2 ** -20)), scale, boxes)
        return boxes.astype(np.float32), labels

    def shard_ids(self) -> np.ndarray:
        """Each sample's shard number (for the shard-aware order)."""
        return self._shard

    @property
    def has_targets(self) -> bool:
        """Whether samples carry more than one class index (DALI's own reader cannot)."""
        return self._wanted is not None

    def describe(self) -> dict[str, Any]:
        return {"kind": "tfrecord", "shards": len(self.shards), "samples": len(self),
                "classes": len(self.classes), "manifest": self.manifest is not None}

    def __repr__(self) -> str:
        return f"TFRecordSource(shards={len(self.shards)}, samples={len(self)})"


def _field_value(feature: Any, parsed: dict[str, Any], key: str, where: str) -> Any:
    """A field from a feature (one value: that value; bytes: text) or, for ``"key:name"``,
    from the JSON object in bytes feature ``key``."""
    name, _, field = key.partition(":")
    values = feature(name)
    if field:
        try:
            if name not in parsed:
                parsed[name] = json.loads(values[0])
            return parsed[name][field]
        except (ValueError, KeyError, TypeError, IndexError):
            raise FormatError(f"{where}: feature {name!r} holds no JSON object with the field "
                              f"{field!r}") from None
    values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    return values[0] if len(values) == 1 else np.asarray(values)


def record_table(shards: Sequence[str], rows: Sequence[np.ndarray], manifest: Optional[Manifest]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per global sample: (shard number, record number, offset, length), from each shard's index
    rows; striped (sample i in shard i % S) with a manifest, else the shards back to back."""
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    if manifest is not None:
        for shard, info, count in zip(shards, manifest.shards, counts):
            if count != info.records:
                raise FormatError(f"{shard}: index has {count} records, {MANIFEST} says "
                                  f"{info.records}; the shard or its index is stale")
    shard = np.concatenate([np.full(c, k, np.int32) for k, c in enumerate(counts)]) \
        if len(counts) else np.zeros(0, np.int32)
    record = np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) \
        if len(counts) else np.zeros(0, np.int64)
    table = np.concatenate(rows) if len(rows) else np.zeros((0, 2), np.int64)
    if manifest is not None and manifest.layout == "striped":
        order = striped_order(counts)
        shard, record, table = shard[order], record[order], table[order]
    return shard, record, table[:, 0].copy(), table[:, 1].copy()


def checked_record(buf: bytes, length: int, where: str, verify: bool) -> bytes:
    """A framed record as read (``length`` bytes expected) -> its verified payload."""
    if len(buf) != length:
        raise FormatError(f"{where}: got {len(buf)} of its {length} bytes: the shard is shorter "
                          "than its index says (truncated or replaced after indexing)")
    return tfrecord.unframe(buf, where, verify=verify)


def image_and_label(record: bytes, keys: tuple[bytes, bytes], where: str) -> tuple[bytes, int]:
    """The image bytes and label of a serialized Example: by the C reader when it is built and
    the record is plain; else by protowire, whose FormatError names ``where``."""
    if _wire is not None:
        found = _wire.example_features(record, keys[0], keys[1])
        if found is not None:
            offset, length, label = found
            return record[offset:offset + length], label
    image_key, label_key = (k.decode("utf-8") for k in keys)
    try:
        example = protowire.decode_example(record, frozenset((image_key, label_key)))
    except FormatError as exc:
        raise FormatError(f"{where}: malformed Example: {exc}") from None
    image, label = example.get(image_key), example.get(label_key)
    if not image or not label:
        found_keys = sorted(protowire.decode_example(record))
        raise FormatError(f"{where}: Example lacks {image_key!r} or {label_key!r} (has "
                          f"{found_keys})")
    if not isinstance(image[0], bytes) or not isinstance(label[0], int):
        raise FormatError(f"{where}: {image_key!r} must be a BytesList and {label_key!r} an "
                          f"Int64List; found a list of {type(image[0]).__name__} and of "
                          f"{type(label[0]).__name__}")
    return image[0], label[0]


def striped_order(counts: np.ndarray) -> np.ndarray:
    """Positions in the shard-concatenated table of global samples 0..N-1 (i -> shard i % S)."""
    total, shards = int(counts.sum()), len(counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    i = np.arange(total, dtype=np.int64)
    return starts[i % shards] + i // shards


def _resolve(path: Any) -> tuple[Optional[Manifest], list[Path]]:
    if isinstance(path, (list, tuple)):
        return None, [Path(p) for p in path]
    text = str(path)
    p = Path(text)
    if p.name == MANIFEST:
        p = p.parent
    if p.is_dir():
        if (p / MANIFEST).exists():
            manifest = read_manifest(p)
            if manifest.format != "tfrecord":
                raise SourceError(f"{p}: {MANIFEST} describes {manifest.format!r} shards, not tfrecord")
            return manifest, [p / s.file for s in manifest.shards]
        found = sorted(q for q in p.iterdir() if _is_shard(q))
        if not found:
            raise SourceError(f"{p}: no *.tfrecord files in this folder")
        return None, found
    if any(c in text for c in "*?["):
        found = sorted(Path(q) for q in glob.glob(text) if _is_shard(Path(q)))
        if not found:
            raise SourceError(f"{text}: the glob matches no TFRecord files")
        return None, found
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder")
    return None, [p]


def _is_shard(p: Path) -> bool:
    return p.is_file() and ".tfrecord" in p.name and not p.name.endswith((".idx", ".tmp")) \
        and not p.name.startswith(".")


def _load_index(shard: Path, build: bool) -> np.ndarray:
    idx = tfrecord.index_path(shard)
    if not shard.exists():
        raise SourceError(f"{shard}: no such TFRecord file")
    if idx.exists():
        return tfrecord.read_index(idx, shard)
    if not build:
        raise SourceError(f"{shard}: no index file {idx.name}; create it with `fastload index "
                          f"{shard}`, or give fl.loader the source "
                          f"fastload.sources.TFRecordSource(path, build_missing_index=True))")
    rows = tfrecord.scan(shard)
    tfrecord.write_index(rows, idx)
    return rows
