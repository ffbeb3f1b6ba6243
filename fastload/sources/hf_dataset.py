"""A Hugging Face ``datasets.Dataset`` as a source, read from its Arrow data.

``fl.loader(dataset, ...)`` with a ``datasets.Dataset`` (``load_dataset("parquet", ...)``,
``load_from_disk``, ``Dataset.from_dict``; selections and shuffles included) reads each row's
encoded bytes through the dataset's Arrow format (``with_format("arrow")``), never through PIL:
an ``Image`` feature's ``bytes`` (or the file at its ``path`` when only that is stored), or a
plain ``binary`` column. Labels are read once, in bulk; ``ClassLabel`` gives the class names. A
disk-backed dataset pickles as its file names (cheap to send to workers), as datasets does.

Targets, as ``ParquetSource``'s: a label column of lists (a ``Sequence`` of ``ClassLabel``) is
multi-label; ``mask_column`` (an ``Image`` or binary column, read with the image),
``boxes_column`` (``[[x0, y0, x1, y1, label], ...]`` a row) and ``fields`` (columns of numbers
or strings) are read as the image and the labels are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import FormatError, SourceError
from .base import list_at
from .parquet import (arrow_labels, box_lists, bulk_extras, field_values, is_list_type,
                      list_labels)


def is_hf_dataset(obj: Any) -> bool:
    """A ``datasets.Dataset`` (checked by its module: datasets need not be installed)."""
    kind = type(obj)
    return kind.__module__.startswith("datasets.") and kind.__name__ == "Dataset"


class HFDatasetSource:
    """Samples of a ``datasets.Dataset`` with an image column and a label column."""

    def __init__(self, dataset: Any, *, image_column: str = "image",
                 label_column: Optional[str] = "label",
                 classes: Optional[Sequence[str]] = None, num_classes: Optional[int] = None,
                 mask_column: Optional[str] = None, boxes_column: Optional[str] = None,
                 fields: Sequence[str] = ()) -> None:
        names = list(dataset.column_names)
        for role, column in (("image", image_column), ("label", label_column),
                             ("mask", mask_column), ("boxes", boxes_column),
                             *(("field", f) for f in fields)):
            if column is not None and column not in names:
                raise SourceError(f"datasets.Dataset: no {role} column {column!r} (its columns: "
                                  f"{names}); pass {role}_column=" if role != "field" else
                                  f"datasets.Dataset: no field column {column!r} (its columns: "
                                  f"{names})")
        self.image_column, self.label_column = image_column, label_column
        self.mask_column, self.has_masks = mask_column, mask_column is not None
        self._rows = dataset.select_columns(
            [image_column, *([mask_column] if mask_column else [])]).with_format("arrow")
        self._fingerprint = getattr(dataset, "_fingerprint", None)
        count = len(dataset)
        if not count:
            raise SourceError("datasets.Dataset: has no rows")

        def column(name: str) -> Any:
            return dataset.select_columns([name]).with_format("arrow")[:][name].combine_chunks()

        def where(row: int) -> str:
            return f"datasets.Dataset row {row}"

        self.multi_label, self.num_classes = False, num_classes
        found = None
        label_values = column(label_column) if label_column else None
        if label_values is None:
            self.labels = np.full(count, -1, np.int64)
        elif is_list_type(label_values.type):
            self.multi_label = True
            flat, offsets, _ = list_labels(label_values, label_column, where)
            self._label_lists = (flat, offsets)
            self.labels = None
            feature = dataset.features[label_column]
            inner = getattr(feature, "feature", None)
            found = list(inner.names) if type(inner).__name__ == "ClassLabel" else None
        else:
            self.labels, _ = arrow_labels(label_values, label_column, where, names=False)
            feature = dataset.features[label_column]
            found = list(feature.names) if type(feature).__name__ == "ClassLabel" else None
        self.classes = list(classes) if classes is not None else found
        if self.multi_label:
            self.num_classes = self.num_classes or (len(self.classes) if self.classes else None)
            if self.num_classes is None:
                raise SourceError(f"datasets.Dataset: the label column {label_column!r} holds "
                                  "lists of class indices (multi-label); pass num_classes=")
        self._boxes = box_lists(column(boxes_column), boxes_column, where) \
            if boxes_column else None
        self._fields = {name: field_values(column(name), name, where) for name in fields}
        self._count = count

    def __len__(self) -> int:
        return self._count

    def locate(self, index: int) -> str:
        return f"datasets.Dataset row {index} (column {self.image_column!r})"

    def read(self, index: int) -> Any:
        """(bytes, label), or (bytes, label, extras) with a mask, boxes or fields."""
        row = self._rows[index]
        data = self._cell(row.column(0)[0].as_py(), index, "image")
        label = list_at(self._label_lists, index) if self.multi_label else int(self.labels[index])
        if not self.has_masks and self._boxes is None and not self._fields:
            return data, label
        extras = bulk_extras(self._boxes, self._fields, index)
        if self.has_masks:
            extras["mask"] = self._cell(row.column(1)[0].as_py(), index, "mask")
        return data, label, extras

    def _cell(self, cell: Any, index: int, what: str) -> bytes:
        """An Image feature's bytes (or its file's), or a binary cell's."""
        if isinstance(cell, dict):
            data = cell.get("bytes")
            if data is None and cell.get("path"):
                try:
                    data = Path(cell["path"]).read_bytes()
                except OSError as exc:
                    raise SourceError(f"{self.locate(index)}: the {what}'s path {cell['path']!r} "
                                      f"cannot be read ({exc.strerror or exc})") from None
        else:
            data = cell
        if data is None:
            raise FormatError(f"{self.locate(index)}: the {what} cell is null")
        if not isinstance(data, (bytes, bytearray)):
            raise FormatError(f"{self.locate(index)}: the {what} column holds "
                              f"{type(data).__name__}, not encoded image bytes")
        return bytes(data)

    def describe(self) -> dict[str, Any]:
        return {"kind": "hf-dataset", "samples": len(self),
                "classes": len(self.classes) if self.classes else None,
                "fingerprint": self._fingerprint}

    def __repr__(self) -> str:
        return f"HFDatasetSource(samples={len(self)})"
