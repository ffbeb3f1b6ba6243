"""The per-sample CPU stage of the torch backend: decode with PIL and execute a SamplePlan.

Crop and resize run as one antialiased bilinear resample of the source box (PIL's
``resize(box=...)``), which equals resize-then-crop without the intermediate image. A JPEG whose
box is at least twice the output size is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain
(RandomResizedCrop only: eval pipelines stay exact).
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Callable

import numpy as np
from PIL import Image

from .errors import DecodeError
from .geometry import SamplePlan

#: Which PIL is in use: pillow-simd's version strings end in ".postN" and carry SIMD resampling.
PIL_FLAVOUR = "pillow-simd" if ".post" in Image.__version__ else "pillow"

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                  Image.DecompressionBombWarning)


def open_image(data: bytes, where: str) -> Image.Image:
    """Open (header only) an encoded image; a clear DecodeError names ``where`` otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"{where}: cannot decode image ({type(exc).__name__}: {exc}); "
                          "check the file, or replace it") from None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the header: a marker scan for JPEG, IHDR for PNG, PIL otherwise."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        pos, end = 2, len(data)
        while pos + 4 <= end:
            if data[pos] != 0xFF:
                break
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            length = int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker in _SOF and pos + 9 <= end:
                return (int.from_bytes(data[pos + 7:pos + 9], "big"),
                        int.from_bytes(data[pos + 5:pos + 7], "big"))
            pos += 2 + length
    return open_image(data, where).size


def decode_rgb(data: bytes, where: str) -> np.ndarray:
    """Full decode to an RGB uint8 (height, width, 3) array."""
    img = open_image(data, where)
    try:
        return np.asarray(_to_rgb(img))
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from None


def render(data: bytes, where: str, planner: Callable[[int, int], SamplePlan],
           out: np.ndarray) -> SamplePlan:
    """Decode ``data``, plan it from its header size, write the (H, W, 3) result into ``out``."""
    img = open_image(data, where)
    width, height = img.size
    plan = planner(height, width)
    try:
        img = _decode_for(img, plan)
        sy, sx = img.size[1] / height, img.size[0] / width
        top, left, h, w = plan.box
        _resample_into(_to_rgb(img), (top * sy, left * sx, h * sy, w * sx), plan.out_size, out)
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"{where}: cannot decode image ({type(exc).__name__}: {exc}); "
                          "check the file, or replace it") from None
    if plan.flip:
        out[:] = out[:, ::-1]
    return plan


def _decode_for(img: Image.Image, plan: SamplePlan) -> Image.Image:
    """Ask the JPEG decoder for the smallest DCT scale that keeps the box >= the output size."""
    if plan.reduced_decode and img.format == "JPEG" and plan.scale >= 2:
        reduce = 2 ** min(3, int(math.log2(plan.scale)))
        width, height = img.size
        img.draft("RGB", (math.ceil(width / reduce), math.ceil(height / reduce)))
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits
        arr = np.asarray(img, dtype=np.uint32) >> 8
        img = Image.fromarray(arr.astype(np.uint8), "L")
    return img.convert("RGB")


def _resample_into(img: Image.Image, box: tuple[float, float, float, float],
                   out_size: tuple[int, int], out: np.ndarray) -> None:
    """Resample the source box to ``out_size``; parts of the box outside the image are zeros."""
    top, left, h, w = box
    out_h, out_w = out_size
    width, height = img.size
    if top >= 0 and left >= 0 and top + h <= height + 1e-6 and left + w <= width + 1e-6:
        out[:] = _resample(img, (left, top, min(left + w, width), min(top + h, height)), (out_w, out_h))
        return
    # CenterCrop larger than the image: resample the visible part into its place, zeros around.
    out[:] = 0
    y0, x0 = max(top, 0.0), max(left, 0.0)
    y1, x1 = min(top + h, float(height)), min(left + w, float(width))
    oy0, ox0 = round((y0 - top) * out_h / h), round((x0 - left) * out_w / w)
    oy1, ox1 = round((y1 - top) * out_h / h), round((x1 - left) * out_w / w)
    if oy1 > oy0 and ox1 > ox0:
        out[oy0:oy1, ox0:ox1] = _resample(img, (x0, y0, x1, y1), (ox1 - ox0, oy1 - oy0))


def _resample(img: Image.Image, box: tuple[float, float, float, float],
              size: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    if (x1 - x0, y1 - y0) == size and float(x0).is_integer() and float(y0).is_integer():
        return np.asarray(img.crop((int(x0), int(y0), int(x1), int(y1))))
    return np.asarray(img.resize(size, Image.BILINEAR, box=box))
