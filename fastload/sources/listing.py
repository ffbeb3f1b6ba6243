"""``fl.ListSource``: image files named in a list (CSV, TSV, JSONL or whitespace-separated
text) with a label each.

- CSV / TSV (``.csv``, ``.tsv``): a header naming ``path`` and ``label`` columns, or no
  header and the path first, the label second.
- JSONL (``.jsonl``, ``.ndjson``): one object a line with ``"path"`` and ``"label"``.
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
from .base import StringTable

JSON_LINES = (".jsonl", ".ndjson")
DELIMITED = {".csv": ",", ".tsv": "\t"}


class ListSource:
    """Samples listed in a file: ``ListSource("train.csv", root="images/")``."""

    def __init__(self, path: Union[str, Path], root: Union[str, Path, None] = None) -> None:
        self.list_path = Path(path)
        if not self.list_path.is_file():
            raise SourceError(f"{self.list_path}: no such list file (CSV, TSV, JSONL or text of "
                              "path and label)")
        self.root = Path(root) if root is not None else self.list_path.parent
        rows = _read_rows(self.list_path)
        if not rows:
            raise SourceError(f"{self.list_path}: lists no samples")
        self.classes, labels = _labels(self.list_path, rows)
        self._paths = StringTable([p for _, p, _ in rows])
        self._lines = np.asarray([line for line, _, _ in rows], dtype=np.int64)
        self.labels = labels

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> Path:
        return Path(os.path.join(self.root, self._paths[index]))

    def locate(self, index: int) -> str:
        return (f"{self.path(index)} ({self.list_path.name} line {int(self._lines[index])}, "
                f"sample {index})")

    def read(self, index: int) -> tuple[bytes, int]:
        try:
            with open(self.path(index), "rb") as f:
                data = f.read()
        except OSError as exc:
            raise SourceError(f"{self.locate(index)}: cannot read: {exc.strerror or exc}; fix "
                              "the list entry or the file (or pass on_error='skip')") from None
        return data, int(self.labels[index])

    def describe(self) -> dict[str, Any]:
        return {"kind": "list", "list": str(self.list_path), "root": str(self.root),
                "samples": len(self),
                "classes": len(self.classes) if self.classes is not None else None}

    def __repr__(self) -> str:
        return f"ListSource({str(self.list_path)!r}, samples={len(self)})"


def _read_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line number, path, label text) of every entry."""
    suffix = path.suffix.lower()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            if suffix in JSON_LINES:
                return _json_rows(path, f)
            if suffix in DELIMITED:
                return _delimited_rows(path, f, DELIMITED[suffix])
            return _text_rows(path, f)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _json_rows(path: Path, f: Any) -> list[tuple[int, str, str]]:
    rows = []
    for number, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path} line {number}: not a JSON object ({exc.msg})") from None
        if not isinstance(entry, dict) or "path" not in entry or "label" not in entry:
            found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise SourceError(f"{path} line {number}: needs \"path\" and \"label\"; found "
                              f"{found}")
        label = entry["label"]
        if isinstance(label, list):
            raise SourceError(f"{path} line {number}: label {label!r} is a list (multi-label "
                              "targets are not read yet); give one class index or name")
        rows.append((number, str(entry["path"]), str(label)))
    return rows


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


def _labels(path: Path, rows: list[tuple[int, str, str]]) -> tuple[Optional[list[str]],
                                                                   np.ndarray]:
    """Integer labels as they are (classes None), or class names numbered in sorted order."""
    texts = [label for _, _, label in rows]
    empty = next((r for r in rows if not r[2] or not r[1]), None)
    if empty is not None:
        raise SourceError(f"{path} line {empty[0]}: an empty path or label")
    ints = [_int(t) for t in texts]
    if all(v is not None for v in ints):
        negative = next((r for r, v in zip(rows, ints) if v < 0), None)
        if negative is not None:
            raise SourceError(f"{path} line {negative[0]}: label {negative[2]} must be >= 0")
        return None, np.asarray(ints, dtype=np.int64)
    named = [r for r, v in zip(rows, ints) if v is None]
    numbered = [r for r, v in zip(rows, ints) if v is not None]
    if numbered:
        raise SourceError(f"{path}: labels mix integers (line {numbered[0][0]}: "
                          f"{numbered[0][2]!r}) and class names (line {named[0][0]}: "
                          f"{named[0][2]!r}); use one kind")
    classes = sorted(set(texts))
    where = {name: i for i, name in enumerate(classes)}
    return classes, np.asarray([where[t] for t in texts], dtype=np.int64)


def _int(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None
