"""``fl.MaskFolderSource``: a segmentation dataset as two folders of the same layout.

``root/images/<name>.jpg`` is paired with ``root/masks/<name>.png`` (the same relative path and
stem; the mask in any image format PIL reads as mode L or P, PNG by convention), as VOC,
ADE20K and Cityscapes-style exports lay them out. Samples are the images in sorted path order;
their label is -1 (no image-level class); each carries its mask (``backends.targets``). An image
without a mask is an error naming both paths when the source is made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from ..errors import SourceError
from .base import StringTable
from .folder import IMAGE_EXTENSIONS

MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".webp")


class MaskFolderSource:
    """``MaskFolderSource("data/seg", images="images", masks="masks")``."""

    multi_label = False
    num_classes = None
    classes = None
    has_masks = True

    def __init__(self, root: Union[str, Path], *, images: str = "images",
                 masks: str = "masks") -> None:
        self.root = Path(root)
        self.images, self.masks = self.root / images, self.root / masks
        for folder in (self.images, self.masks):
            if not folder.is_dir():
                raise SourceError(f"{folder}: no such folder; a MaskFolderSource reads "
                                  f"{self.root}/<images>/ and {self.root}/<masks>/ (images= and "
                                  "masks= name them)")
        found, paired = [], []
        for folder, _, files in sorted(os.walk(self.images)):
            for name in sorted(files):
                if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                    found.append(os.path.relpath(os.path.join(folder, name), self.images))
        if not found:
            raise SourceError(f"{self.images}: holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        for relative in found:
            stem = os.path.splitext(relative)[0]
            mask = next((stem + ext for ext in MASK_EXTENSIONS
                         if (self.masks / (stem + ext)).is_file()), None)
            if mask is None:
                raise SourceError(f"{self.images / relative}: no mask for it in {self.masks} "
                                  f"({stem}.png or another of {', '.join(MASK_EXTENSIONS)}); "
                                  "give every image its mask")
            paired.append(mask)
        self._images, self._masks = StringTable(found), StringTable(paired)
        # joined as strings per sample (pathlib costs ~10 us a sample)
        self._image_dir, self._mask_dir = str(self.images), str(self.masks)

    def __len__(self) -> int:
        return len(self._images)

    def path(self, index: int) -> Path:
        return Path(self._image_file(index))

    def _image_file(self, index: int) -> str:
        return os.path.join(self._image_dir, self._images[index])

    def locate(self, index: int) -> str:
        return f"{self._image_file(index)} (sample {index})"

    def read(self, index: int) -> tuple[bytes, int, dict]:
        return self._file(self._image_file(index), index), -1, \
            {"mask": self._file(os.path.join(self._mask_dir, self._masks[index]), index)}

    def _file(self, path: str, index: int) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise SourceError(f"{self.locate(index)}: cannot read {path}: "
                              f"{exc.strerror or exc} (or pass on_error='skip')") from None

    def describe(self) -> dict[str, Any]:
        return {"kind": "mask-folder", "root": str(self.root), "samples": len(self)}

    def __repr__(self) -> str:
        return f"MaskFolderSource({str(self.root)!r}, samples={len(self)})"
