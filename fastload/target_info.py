"""A sample's targets as a source gives them, checked: torch-free, so ``fastload convert`` (which
writes them into WebDataset shards) and the backends (``backends.targets``) share one reading.

A source's ``read(i)`` gives ``(bytes, label)`` or ``(bytes, label, extras)``; see
``fastload.backends.targets`` for what ``extras`` may hold.
"""

from __future__ import annotations

import io
from typing import Any, Optional

import numpy as np

from .errors import DecodeError, SourceError

try:  # zlib-ng inflates a mask ~3.5x faster than the standard library's zlib, to the same bytes
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover - a dependency; a platform without its wheel keeps zlib
    import zlib  # type: ignore[no-redef]
try:
    from ._kernels import png_unfilter as _png_unfilter
except ImportError:  # pragma: no cover - the C extension is optional: PIL decodes masks then
    _png_unfilter = None

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


def decode_mask(mask: Any, size: tuple[int, int], where: str,
                rows: Optional[int] = None) -> np.ndarray:
    """An encoded mask (PNG in mode L, P or 1; 16-bit with values below 256) or an array ->
    uint8 (H, W), checked against the image's ``size`` (h, w). ``rows``: only the first rows
    are needed (a crop's bottom): an 8-bit PNG is then inflated and unfiltered that far only
    (``png_rows``); the result may have fewer rows than the image."""
    if isinstance(mask, (bytes, bytearray, memoryview)):
        found = png_rows(bytes(mask), size[0] if rows is None else rows, where)
        if found is not None:
            array, shape = found
            if shape != tuple(size):
                raise DecodeError(f"{where}: its mask is {shape[1]}x{shape[0]} but the image is "
                                  f"{size[1]}x{size[0]}; a mask has its image's size")
            return array
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_rows(data: bytes, rows: int, where: str) -> Optional[tuple[np.ndarray, tuple[int, int]]]:
    """The first ``rows`` rows of a non-interlaced 8-bit grey or palette PNG (the common mask;
    palette: the indices, as PIL gives them) and its (height, width): the chunks' CRCs checked,
    the image data inflated only that far and unfiltered in C (``fastload._kernels``). None for
    any other PNG or file, or without the extension: PIL decodes those (and names damage)."""
    if _png_unfilter is None or data[:8] != PNG_SIGNATURE:
        return None
    at, header, chunks = 8, None, []
    while at + 12 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        stored = data[at + 8 + length:at + 12 + length]
        if len(body) != length or len(stored) != 4:
            return None  # truncated: PIL says so
        if zlib.crc32(body, zlib.crc32(kind)) != int.from_bytes(stored, "big"):
            raise DecodeError(f"{where}: its mask's {kind.decode('latin-1')} chunk fails its "
                              "CRC: the PNG is damaged; replace it")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
        at += 12 + length
    if header is None or len(header) != 13 or not chunks:
        return None
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, color, interlace = header[8], header[9], header[12]
    if depth != 8 or color not in (0, 3) or interlace != 0 or width == 0 or height == 0:
        return None
    rows = min(rows, height)
    need = rows * (width + 1)
    try:
        raw = zlib.decompressobj().decompress(b"".join(chunks), need)
    except zlib.error:
        return None
    if len(raw) < need:
        return None
    out = np.empty((rows, width), np.uint8)
    try:
        _png_unfilter(raw, out, rows, width)
    except ValueError:
        return None
    return out, (height, width)


def check_boxes(boxes: Any, labels: Any, size: tuple[int, int],
                where: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) float64 xyxy inside the ``size`` (h, w) image and (N,) int64 labels >= 0."""
    try:
        array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else \
            np.zeros((0, 4))
    except (TypeError, ValueError):
        raise SourceError(f"{where}: boxes {boxes!r:.80} are not (N, 4) numbers "
                          "(x0, y0, x1, y1 in pixels)") from None
    count = len(array)
    labels = np.zeros(count, np.int64) if labels is None else np.asarray(labels).reshape(-1)
    if len(labels) != count or (count and labels.dtype.kind not in "iu"):
        raise SourceError(f"{where}: {count} boxes but box labels {labels.tolist()!r:.60}; give "
                          "one integer label a box")
    height, width = size
    # one pass of Python floats: a few boxes a sample, where numpy's per-call cost dominates
    for k, (x0, y0, x1, y1) in enumerate(array.tolist()):
        if not (0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):  # NaN fails too
            raise SourceError(f"{where}: box {k} {[x0, y0, x1, y1]} is not inside the {width}x"
                              f"{height} image (x0 <= x1 <= width, y0 <= y1 <= height, pixels)")
    if count and labels.min() < 0:
        raise SourceError(f"{where}: box label {int(labels.min())} is negative")
    return array, labels.astype(np.int64, copy=False)
