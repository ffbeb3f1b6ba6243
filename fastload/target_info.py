"""A sample's targets as a source gives them, checked: torch-free, so ``fastload convert`` (which
writes them into WebDataset shards) and the backends (``backends.targets``) share one reading.

A source's ``read(i)`` gives ``(bytes, label)`` or ``(bytes, label, extras)``; see
``fastload.backends.targets`` for what ``extras`` may hold.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .errors import DecodeError, SourceError

TARGET_KEYS = ("mask", "boxes", "box_labels")


def split_read(result: Any, where: str) -> tuple[bytes, Any, dict]:
    """A source's ``read`` result as (bytes, label, extras)."""
    if isinstance(result, tuple) and len(result) == 3 and isinstance(result[2], dict):
        return result[0], result[1], result[2]
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], result[1], {}
    raise SourceError(f"{where}: read() returned {type(result).__name__} of "
                      f"{len(result) if isinstance(result, tuple) else '?'} items; a source returns "
                      "(bytes, label) or (bytes, label, extras dict)")


def decode_mask(mask: Any, size: tuple[int, int], where: str) -> np.ndarray:
    """An encoded mask (PNG in mode L, P or 1; 16-bit with values below 256) or an array ->
    uint8 (H, W), checked against the image's ``size`` (h, w)."""
    if isinstance(mask, (bytes, bytearray, memoryview)):
        from PIL import Image

        try:
            img = Image.open(io.BytesIO(mask))
            img.load()
        except Exception as exc:  # noqa: BLE001 - PIL's errors vary by format
            raise DecodeError(f"{where}: its mask cannot be decoded ({type(exc).__name__}: "
                              f"{exc}); check the mask file") from None
        if img.mode not in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L"):
            raise DecodeError(f"{where}: its mask is a {img.mode} image; a mask holds one class "
                              "index per pixel (a PNG in mode L or P)")
        array = np.asarray(img)
    else:
        array = np.asarray(mask)
        if array.ndim != 2 or array.dtype.kind not in "iub":
            raise DecodeError(f"{where}: its mask is a {array.dtype} array of shape "
                              f"{array.shape}; a mask is an (H, W) integer array")
    if array.shape != tuple(size):
        raise DecodeError(f"{where}: its mask is {array.shape[1]}x{array.shape[0]} but the image "
                          f"is {size[1]}x{size[0]}; a mask has its image's size")
    if array.size and (int(array.max()) > 255 or int(array.min()) < 0):
        raise DecodeError(f"{where}: its mask holds the value {int(array.max())}; classes of a "
                          "mask are 0..255")
    return array.astype(np.uint8, copy=False)


def check_boxes(boxes: Any, labels: Any, size: tuple[int, int],
                where: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) float32 xyxy inside the ``size`` (h, w) image and (N,) int64 labels >= 0."""
    try:
        array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else \
            np.zeros((0, 4))
    except (TypeError, ValueError):
        raise SourceError(f"{where}: boxes {boxes!r:.80} are not (N, 4) numbers "
                          "(x0, y0, x1, y1 in pixels)") from None
    count = len(array)
    labels = np.zeros(count, np.int64) if labels is None else np.asarray(labels).reshape(-1)
    if len(labels) != count or labels.dtype.kind not in "iu":
        raise SourceError(f"{where}: {count} boxes but box labels {labels.tolist()!r:.60}; give "
                          "one integer label a box")
    height, width = size
    bad = (~np.isfinite(array).all(1) | (array[:, 0] < 0) | (array[:, 1] < 0)
           | (array[:, 2] > width) | (array[:, 3] > height) | (array[:, 2] < array[:, 0])
           | (array[:, 3] < array[:, 1]))
    if bad.any():
        k = int(np.argmax(bad))
        raise SourceError(f"{where}: box {k} {array[k].tolist()} is not inside the {width}x"
                          f"{height} image (x0 <= x1 <= width, y0 <= y1 <= height, pixels)")
    if count and labels.min() < 0:
        raise SourceError(f"{where}: box label {int(labels.min())} is negative")
    return array, labels.astype(np.int64)
