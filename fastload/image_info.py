"""Facts about an encoded image, without torch: its size from the header, the pixel-count
check against decompression bombs, and opening it with PIL. Used by the decoders of both
backends and by ``fastload convert`` (which must not load torch)."""

from __future__ import annotations

import io
import re
from typing import Optional

from PIL import Image

from .errors import DecodeError

DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                 Image.DecompressionBombWarning)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_BYTESIO = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def fail(where: str, exc: BaseException) -> DecodeError:
    reason = _BYTESIO.sub("the data", str(exc))  # PIL names its in-memory file object
    return DecodeError(f"{where}: cannot decode image ({type(exc).__name__}: {reason}); "
                       "check the file, or replace it")


def open_image(data: bytes, where: str) -> Image.Image:
    """Open (header only) an encoded image with PIL; a clear DecodeError names ``where``,
    decompression bombs included (``check_pixels``: an error, where PIL only warns up to twice
    its limit; no warning filters, which are process-wide and race with other threads)."""
    try:
        img = Image.open(io.BytesIO(data))
    except DECODE_ERRORS as exc:
        raise fail(where, exc) from None
    check_pixels(img.width, img.height, where)
    return img


def image_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the header: a marker scan for JPEG, IHDR for PNG, PIL otherwise."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        frame = _jpeg_frame(data)
        if frame is not None:
            return frame[1], frame[2]
    return open_image(data, where).size


def check_pixels(width: int, height: int, where: str) -> None:
    """Refuse a header with no pixels, and decompression bombs as PIL does
    (``PIL.Image.MAX_IMAGE_PIXELS``)."""
    if width <= 0 or height <= 0:
        raise DecodeError(f"{where}: the header gives a {width}x{height} image; the file is "
                          "damaged: check it, or replace it")
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise DecodeError(f"{where}: {width}x{height} = {width * height} pixels exceeds the "
                          f"decompression-bomb limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS); "
                          "raise that limit if the image is genuine")


def check_payload(data: bytes, width: int, height: int, where: str) -> None:
    """Refuse a JPEG whose header declares more pixels than its data can hold: Huffman coding
    spends at least one bit per 8x8 luma block (a DC code), so a file of fewer bytes than
    blocks / 8 is damaged or forged (decoders would fill the missing rows with grey)."""
    frame = _jpeg_frame(data) if data[:2] == b"\xff\xd8" else None
    if frame is None or frame[0] in _ARITHMETIC_SOF:
        return
    need = -(-width // 8) * -(-height // 8) // 8
    if len(data) < need:
        raise DecodeError(f"{where}: the header declares a {width}x{height} image, which needs at "
                          f"least {need} bytes of data, but the file has {len(data)}: it is "
                          "damaged (or its header was changed); check it, or replace it")


def _jpeg_frame(data: bytes) -> Optional[tuple[int, int, int]]:
    """(SOF marker, width, height) from a marker scan of a JPEG's header; None if not found."""
    pos, end = 2, len(data)
    while pos + 4 <= end and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF and pos + 9 <= end:
            return (marker, int.from_bytes(data[pos + 7:pos + 9], "big"),
                    int.from_bytes(data[pos + 5:pos + 7], "big"))
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


def read_header(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) of an encoded image, checked before anything is allocated: a readable
    header, a sane pixel count, a payload that can hold it. What both backends do first."""
    width, height = image_size(data, where)
    check_pixels(width, height, where)
    check_payload(data, width, height, where)
    return width, height
