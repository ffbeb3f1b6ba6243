"""ImageFolder layout: ``root/<class>/<image>``; classes sorted by name, files sorted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import SourceError
from .base import StringTable

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class FolderSource:
    """Images under ``root/<class>/...`` (sub-folders included), labelled by sorted class name."""

    def __init__(self, root: Union[str, Path], *, extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
                 allow_empty_classes: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: not a folder; expected root/<class>/<image> files")
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise SourceError(f"{self.root}: no class folders; expected root/<class>/<image> files")
        exts = tuple(e.lower() for e in extensions)
        paths: list[str] = []
        labels: list[int] = []
        empty: list[str] = []
        for label, name in enumerate(self.classes):
            found = _scan(self.root / name, exts)
            if not found:
                empty.append(name)
            paths.extend(os.path.join(name, f) for f in found)
            labels.extend([label] * len(found))
        if not paths:
            raise SourceError(f"{self.root}: no image files ({', '.join(exts)}) in any class folder")
        if empty and not allow_empty_classes:
            raise SourceError(f"{self.root}: class folder(s) with no image files: {empty[:10]}"
                              f"{' ...' if len(empty) > 10 else ''}; remove them or pass "
                              "allow_empty_classes=True to keep their labels")
        self.empty_classes = empty
        self._paths = StringTable(paths)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._paths)

    def relative_path(self, index: int) -> str:
        """``<class>/<file>`` of sample ``index``, relative to the root."""
        return self._paths[index]

    def path(self, index: int) -> Path:
        return Path(self._file(index))

    def _file(self, index: int) -> str:
        # a string join, not pathlib: no Path objects per sample on the hot path
        return os.path.join(self.root, self.relative_path(index))

    def locate(self, index: int) -> str:
        return f"{self._file(index)} (sample {index})"

    def read(self, index: int) -> tuple[bytes, int]:
        path = self._file(index)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise SourceError(f"{path} (sample {index}): cannot read: {exc.strerror or exc}; "
                              "was the dataset changed while the loader ran?") from None
        return data, int(self.labels[index])

    def describe(self) -> dict[str, Any]:
        return {"kind": "folder", "root": str(self.root), "samples": len(self),
                "classes": len(self.classes)}

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r}, samples={len(self)}, classes={len(self.classes)})"


def _scan(folder: Path, exts: tuple[str, ...]) -> list[str]:
    """Image files under ``folder`` (symlinks followed), as sorted paths relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        rel = os.path.relpath(dirpath, folder)
        for name in sorted(filenames):
            if name.lower().endswith(exts):
                found.append(name if rel == "." else os.path.join(rel, name))
    return sorted(found)
