"""``fl.ListSource``: image files named in a list (CSV, TSV, JSONL or whitespace-separated
text) with a label each.

- CSV / TSV (``.csv``, ``.tsv``): a header naming ``path`` and ``label`` columns, or no
  header and the path first, the label second.
- JSONL (``.jsonl``, ``.ndjson``): one object a line with ``"path"`` and ``"label"``, which
  may carry more (``backends.targets``): ``"label": [3, 7]`` (multi-label: several class
  indices or names; ``num_classes=`` for indices), no ``"label"`` (-1: a segmentation or
  detection sample), ``"mask": "masks/a.png"`` (relative to ``root`` as the path),
  ``"boxes": [[x0, y0, x1, y1, label], ...]`` (pixels; the label an index or a class name),
  and any other key: a per-sample field (a number, a string or a list of numbers).
- Anything else: one ``path label`` a line, split at the last run of whitespace (a path may
  hold spaces). Blank lines and lines starting with ``#`` are skipped in text lists.

Paths are relative to ``root`` (default: the list file's folder) unless absolute. Labels are
all integers (taken as they are), or all class names (sorted, as ImageFolder sorts its
folders, and numbered in that order: ``classes``). A file that does not exist is named when
its sample is read (with the list's line), so ``on_error="skip"`` can step over it.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import SourceError
from .base import StringTable, list_at

JSON_LINES = (".jsonl", ".ndjson")
DELIMITED = {".csv": ",", ".tsv": "\t"}


class ListSource:
    """Samples listed in a file: ``ListSource("train.csv", root="images/")``."""

    def __init__(self, path: Union[str, Path], root: Union[str, Path, None] = None, *,
                 num_classes: Optional[int] = None) -> None:
        self.list_path = Path(path)
        if not self.list_path.is_file():
            raise SourceError(f"{self.list_path}: no such list file (CSV, TSV, JSONL or text of "
                              "path and label)")
        self.root = Path(root) if root is not None else self.list_path.parent
        self._root = str(self.root)  # joined as strings per sample (pathlib costs ~10 us)
        self._list_name = self.list_path.name
        rows, extras = _read_rows(self.list_path)
        if not rows:
            raise SourceError(f"{self.list_path}: lists no samples")
        self._paths = StringTable([p for _, p, _ in rows])
        self._lines = np.asarray([line for line, _, _ in rows], dtype=np.int64)
        self.multi_label = any(isinstance(label, list) for _, _, label in rows)
        self._extras: Optional[StringTable] = None  # each line's targets and fields, as JSON
        if self.multi_label:
            self.classes, self._label_lists = _label_lists(self.list_path, rows)
            self.labels = None  # no single class a sample: ClassBalanced and stratify refuse
            self.num_classes = _num_classes(self.list_path, self.classes, self._label_lists,
                                            num_classes)
        else:
            self.classes, self.labels = _labels(self.list_path, rows)
            self.num_classes = num_classes
        self.has_masks = any("mask" in e for e in extras)
        if any(extras):
            named = {name: i for i, name in enumerate(self.classes or [])}
            self._extras = StringTable([json.dumps(_box_labels(self.list_path, line, e, named))
                                        for (line, _, _), e in zip(rows, extras)])

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> Path:
        return Path(self._file_name(index))

    def _file_name(self, index: int) -> str:
        return os.path.join(self._root, self._paths[index])

    def locate(self, index: int) -> str:
        return (f"{self._file_name(index)} ({self._list_name} line {int(self._lines[index])}, "
                f"sample {index})")

    def read(self, index: int) -> Any:
        """(bytes, label), or (bytes, label, extras) for a JSONL with targets or fields."""
        data = self._file(self._file_name(index), index)
        if self.multi_label:
            label: Any = list_at(self._label_lists, index)
        else:
            label = int(self.labels[index])
        if self._extras is None:
            return data, label
        extras = json.loads(self._extras[index])
        if "mask" in extras:
            extras["mask"] = self._file(os.path.join(self._root, extras["mask"]), index, "mask ")
        if "boxes" in extras:
            boxes = extras["boxes"]
            extras["boxes"] = np.asarray([b[:4] for b in boxes], np.float32).reshape(-1, 4)
            extras["box_labels"] = np.asarray([b[4] for b in boxes], np.int64)
        return data, label, extras

    def _file(self, path: str, index: int, what: str = "") -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise SourceError(f"{self.locate(index)}: cannot read its {what}file {path}: "
                              f"{exc.strerror or exc}; fix the list entry or the file (or pass "
                              "on_error='skip')") from None

    def describe(self) -> dict[str, Any]:
        return {"kind": "list", "list": str(self.list_path), "root": str(self.root),
                "samples": len(self),
                "classes": len(self.classes) if self.classes is not None else None}

    def __repr__(self) -> str:
        return f"ListSource({str(self.list_path)!r}, samples={len(self)})"


def _read_rows(path: Path) -> tuple[list[tuple[int, str, Any]], list[dict]]:
    """(line number, path, label text (a list of them for several)) of every entry, and each
    entry's other keys (JSONL only)."""
    suffix = path.suffix.lower()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            if suffix in JSON_LINES:
                return _json_rows(path, f)
            rows = (_delimited_rows(path, f, DELIMITED[suffix]) if suffix in DELIMITED
                    else _text_rows(path, f))
            return rows, [{}] * len(rows)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _json_rows(path: Path, f: Any) -> tuple[list[tuple[int, str, Any]], list[dict]]:
    rows, extras = [], []
    for number, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path} line {number}: not a JSON object ({exc.msg})") from None
        if not isinstance(entry, dict) or "path" not in entry or (
                "label" not in entry and "mask" not in entry and "boxes" not in entry):
            found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise SourceError(f"{path} line {number}: needs \"path\" and \"label\" (or a "
                              f"\"mask\" or \"boxes\"); found {found}")
        label = entry.pop("label", None)  # None: no image-level label (-1)
        if label is not None:
            label = [str(v) for v in label] if isinstance(label, list) else str(label)
        rows.append((number, str(entry.pop("path")), label))
        extras.append(_checked_extras(path, number, entry))
    return rows, extras


def _checked_extras(path: Path, number: int, entry: dict) -> dict:
    """A JSONL line's keys besides path and label: mask, boxes, fields, checked."""
    where = f"{path} line {number}"
    if "mask" in entry and not isinstance(entry["mask"], str):
        raise SourceError(f"{where}: \"mask\" must be the mask file's path")
    boxes = entry.get("boxes")
    if boxes is not None and not (isinstance(boxes, list) and all(
            isinstance(b, list) and len(b) == 5 and all(
                isinstance(v, (int, float)) for v in b[:4]) for b in boxes)):
        raise SourceError(f"{where}: \"boxes\" must be [[x0, y0, x1, y1, label], ...] "
                          f"(pixels); found {boxes!r:.80}")
    for name, value in entry.items():
        if name in ("mask", "boxes"):
            continue
        if not (isinstance(value, (int, float, str, bool)) or (isinstance(value, list) and all(
                isinstance(v, (int, float, bool)) for v in value))):
            raise SourceError(f"{where}: field {name!r} is {value!r:.60}; a field is a number, a "
                              "string or a list of numbers")
    return entry


def _box_labels(path: Path, line: int, extras: dict, named: dict[str, int]) -> dict:
    """Box labels as class indices: integers as they are, names by the list's classes."""
    if "boxes" not in extras:
        return extras
    boxes = []
    for box in extras["boxes"]:
        label = box[4]
        if isinstance(label, str):
            if label not in named:
                raise SourceError(f"{path} line {line}: box label {label!r} is not a class of "
                                  f"this list ({', '.join(list(named)[:8])})")
            label = named[label]
        if not isinstance(label, int) or label < 0:
            raise SourceError(f"{path} line {line}: box label {label!r} must be a class index "
                              ">= 0 or a class name")
        boxes.append([*box[:4], label])
    return {**extras, "boxes": boxes}


def _delimited_rows(path: Path, f: Any, delimiter: str) -> list[tuple[int, str, str]]:
    reader = csv.reader(f, delimiter=delimiter)
    rows, columns = [], (0, 1)
    for number, row in enumerate(reader, 1):
        if not row or not "".join(row).strip():
            continue
        names = [c.strip().lower() for c in row]
        if number == 1 and "path" in names and "label" in names:
            columns = (names.index("path"), names.index("label"))  # a header
            continue
        if len(row) <= max(columns):
            raise SourceError(f"{path} line {number}: {len(row)} column(s), need a path and a "
                              f"label (columns {columns[0] + 1} and {columns[1] + 1})")
        rows.append((number, row[columns[0]].strip(), row[columns[1]].strip()))
    return rows


def _text_rows(path: Path, f: Any) -> list[tuple[int, str, str]]:
    rows = []
    for number, line in enumerate(f, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.rsplit(None, 1)
        if len(parts) != 2:
            raise SourceError(f"{path} line {number}: {text!r:.80} needs a path and a label "
                              "separated by whitespace")
        rows.append((number, parts[0], parts[1]))
    return rows


def _labels(path: Path, rows: list[tuple[int, str, Any]]) -> tuple[Optional[list[str]],
                                                                   np.ndarray]:
    """Integer labels as they are (classes None), or class names numbered in sorted order; a
    JSONL line without a label (a mask or boxes only) is -1."""
    given = [r for r in rows if r[2] is not None]
    empty = next((r for r in rows if r[2] == "" or not r[1]), None)
    if empty is not None:
        raise SourceError(f"{path} line {empty[0]}: an empty path or label")
    ints = [_int(r[2]) for r in given]
    labels = np.full(len(rows), -1, dtype=np.int64)
    has = np.asarray([r[2] is not None for r in rows], bool)
    if all(v is not None for v in ints):
        negative = next((r for r, v in zip(given, ints) if v < 0), None)
        if negative is not None:
            raise SourceError(f"{path} line {negative[0]}: label {negative[2]} must be >= 0")
        labels[has] = ints
        return None, labels
    named = [r for r, v in zip(given, ints) if v is None]
    numbered = [r for r, v in zip(given, ints) if v is not None]
    if numbered:
        raise SourceError(f"{path}: labels mix integers (line {numbered[0][0]}: "
                          f"{numbered[0][2]!r}) and class names (line {named[0][0]}: "
                          f"{named[0][2]!r}); use one kind")
    classes = sorted({r[2] for r in given})
    where = {name: i for i, name in enumerate(classes)}
    labels[has] = [where[r[2]] for r in given]
    return classes, labels


def _label_lists(path: Path, rows: list) -> tuple[Optional[list[str]], tuple[np.ndarray,
                                                                               np.ndarray]]:
    """Multi-label lists as (flat class indices, offsets): integers as they are, or class names
    numbered in sorted order."""
    lists = [label if isinstance(label, list) else [] if label is None else [label]
             for _, _, label in rows]
    texts = [t for labels in lists for t in labels]
    ints = [_int(t) for t in texts]
    classes = None
    if all(v is not None for v in ints):
        if any(v < 0 for v in ints):
            bad = next(r for r, labels in zip(rows, lists) if any(_int(t) < 0 for t in labels))
            raise SourceError(f"{path} line {bad[0]}: a label of {bad[2]} is negative")
        flat = np.asarray(ints, np.int64)
    elif any(v is not None for v in ints):
        raise SourceError(f"{path}: labels mix integers and class names; use one kind")
    else:
        classes = sorted(set(texts))
        where = {name: i for i, name in enumerate(classes)}
        flat = np.asarray([where[t] for t in texts], np.int64)
    offsets = np.cumsum([0] + [len(labels) for labels in lists]).astype(np.int64)
    return classes, (flat, offsets)


def _num_classes(path: Path, classes: Optional[list[str]], lists: tuple[np.ndarray, np.ndarray],
                 given: Optional[int]) -> int:
    if given is None:
        if classes is None:
            raise SourceError(f"{path}: multi-label lists of class indices need num_classes= "
                              "(the multi-hot target's width)")
        return len(classes)
    if classes is not None and given != len(classes):
        raise SourceError(f"{path}: num_classes={given} but the list names {len(classes)} classes")
    if len(lists[0]) and int(lists[0].max()) >= given:
        raise SourceError(f"{path}: a label is {int(lists[0].max())}, not below "
                          f"num_classes={given}")
    return given


def _int(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None
