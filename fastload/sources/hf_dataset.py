"""A Hugging Face ``datasets.Dataset`` as a source, read from its Arrow data.

``fl.loader(dataset, ...)`` with a ``datasets.Dataset`` (``load_dataset("parquet", ...)``,
``load_from_disk``, ``Dataset.from_dict``; selections and shuffles included) reads each row's
encoded bytes through the dataset's Arrow format (``with_format("arrow")``), never through PIL:
an ``Image`` feature's ``bytes`` (or the file at its ``path`` when only that is stored), or a
plain ``binary`` column. Labels are read once, in bulk; ``ClassLabel`` gives the class names. A
disk-backed dataset pickles as its file names (cheap to send to workers), as datasets does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import FormatError, SourceError
from .parquet import arrow_labels


def is_hf_dataset(obj: Any) -> bool:
    """A ``datasets.Dataset`` (checked by its module: datasets need not be installed)."""
    kind = type(obj)
    return kind.__module__.startswith("datasets.") and kind.__name__ == "Dataset"


class HFDatasetSource:
    """Samples of a ``datasets.Dataset`` with an image column and a label column."""

    def __init__(self, dataset: Any, *, image_column: str = "image", label_column: str = "label",
                 classes: Optional[Sequence[str]] = None) -> None:
        names = list(dataset.column_names)
        for role, column in (("image", image_column), ("label", label_column)):
            if column not in names:
                raise SourceError(f"datasets.Dataset: no {role} column {column!r} (its columns: "
                                  f"{names}); pass {role}_column=")
        self.image_column, self.label_column = image_column, label_column
        self._rows = dataset.select_columns([image_column]).with_format("arrow")
        labels = dataset.select_columns([label_column]).with_format("arrow")[:][label_column]
        self.labels, _ = arrow_labels(labels.combine_chunks(), label_column,
                                      lambda row: f"datasets.Dataset row {row}", names=False)
        feature = dataset.features[label_column]
        found = list(feature.names) if type(feature).__name__ == "ClassLabel" else None
        self.classes = list(classes) if classes is not None else found
        self._fingerprint = getattr(dataset, "_fingerprint", None)
        if not len(self.labels):
            raise SourceError("datasets.Dataset: has no rows")

    def __len__(self) -> int:
        return len(self.labels)

    def locate(self, index: int) -> str:
        return f"datasets.Dataset row {index} (column {self.image_column!r})"

    def read(self, index: int) -> tuple[bytes, int]:
        cell = self._rows[index].column(0)[0].as_py()
        if isinstance(cell, dict):
            data = cell.get("bytes")
            if data is None and cell.get("path"):
                try:
                    data = Path(cell["path"]).read_bytes()
                except OSError as exc:
                    raise SourceError(f"{self.locate(index)}: the image's path {cell['path']!r} "
                                      f"cannot be read ({exc.strerror or exc})") from None
        else:
            data = cell
        if data is None:
            raise FormatError(f"{self.locate(index)}: the image cell is null")
        if not isinstance(data, (bytes, bytearray)):
            raise FormatError(f"{self.locate(index)}: the image column holds "
                              f"{type(data).__name__}, not encoded image bytes")
        return bytes(data), int(self.labels[index])

    def describe(self) -> dict[str, Any]:
        return {"kind": "hf-dataset", "samples": len(self),
                "classes": len(self.classes) if self.classes else None,
                "fingerprint": self._fingerprint}

    def __repr__(self) -> str:
        return f"HFDatasetSource(samples={len(self)})"
