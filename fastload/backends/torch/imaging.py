"""The per-sample CPU stage of the torch backend: decode, then execute a SamplePlan.

- Decode: a crop box (RandomResizedCrop, CenterCrop) of a JPEG is decoded alone by fastload's C
  extension ``fastload._jpeg`` when it was built (libjpeg-turbo: rows above the box skip the
  inverse DCT, rows below are never decoded, columns outside are not transformed; the pixels
  are the same as a full decode cropped). Whole JPEGs (and crops when the extension is
  missing) go to simplejpeg when it is installed (libjpeg-turbo, bit-identical to PIL's
  output); everything else, and
  JPEGs either rejects, to PIL. A RandomResizedCrop box at least twice the output size is
  decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (only powers of two: libjpeg-turbo's
  other scales are slower than a full decode).
- Resample: antialiased bilinear with the arithmetic of torch's uint8 kernel (identical pixels;
  within 0.05 levels of Pillow's), by fastload's C extension ``fastload._kernels`` when it was
  built (from RGBX rows, straight into the batch, mirrored there), else by ``interpolate``. A whole-pixel box is cut out and resized; a
  fractional box (Resize + CenterCrop) is done as torchvision does it: resize the whole image,
  then crop (the C kernel computes only the crop). Parts of a crop outside the image are zeros.

What each choice gained, measured: benchmarks/README.md ("What was measured and kept").
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import DecodeError
from ...image_info import DECODE_ERRORS, fail, image_size, open_image
from ...ops.geometry import SamplePlan

try:
    import simplejpeg
except ImportError:  # pragma: no cover - optional speed-up
    simplejpeg = None
try:
    from ... import _jpeg
except ImportError:  # pragma: no cover - built only where libjpeg-turbo's headers are
    _jpeg = None
try:
    from ..._kernels import resample as _resample
except ImportError:  # pragma: no cover - the C extension is optional
    _resample = None

#: What resizes crops in the torch backend.
RESAMPLER = "fastload._kernels" if _resample is not None else "torch interpolate"
#: Pixels per decoded pixel the region decoder writes: RGBX feeds the C resampler fastest.
_CHANNELS = 4 if _resample is not None else 3

#: Which PIL is in use: pillow-simd's version strings end in ".postN" and carry SIMD resampling.
PIL_FLAVOUR = "pillow-simd" if ".post" in Image.__version__ else "pillow"
#: Which JPEG decoder the torch backend uses.
JPEG_DECODER = ("fastload._jpeg region decode (libjpeg-turbo "
                f"{_jpeg.LIBJPEG_TURBO_VERSION}) + simplejpeg" if _jpeg is not None and simplejpeg
                else "fastload._jpeg region decode + pillow" if _jpeg is not None
                else "simplejpeg" if simplejpeg is not None else "pillow")

def decode_rgb(data: bytes, where: str, reduce: int = 1) -> np.ndarray:
    """RGB uint8 (height, width, 3); ``reduce`` in (1, 2, 4, 8) asks a JPEG for a DCT-scaled
    decode (the result is ceil(size / reduce))."""
    if simplejpeg is not None and data[:2] == b"\xff\xd8":
        try:
            if reduce == 1:
                return simplejpeg.decode_jpeg(data)
            width, height = image_size(data, where)
            return simplejpeg.decode_jpeg(data, min_height=math.ceil(height / reduce),
                                          min_width=math.ceil(width / reduce))
        except ValueError:
            pass  # e.g. an unusual colour space: PIL decides, and names the file if it fails
    img = open_image(data, where)
    try:
        if reduce > 1 and img.format == "JPEG":
            img.draft("RGB", (img.size[0] // reduce, img.size[1] // reduce))
        return np.array(_to_rgb(img))  # writable: torch warns about read-only arrays
    except DECODE_ERRORS as exc:
        raise fail(where, exc) from None


def render(data: bytes, where: str, plan: SamplePlan, size: tuple[int, int],
           out: torch.Tensor) -> None:
    """Decode what ``plan`` needs of ``data`` (a ``size`` (height, width) image, from its
    checked header: ``image_info.read_header``) and write the uint8 (3, H, W) result into
    ``out`` (channels first: what the resampling kernel produces and the tail consumes)."""
    height, width = size
    reduce = 1
    if plan.reduced_decode and plan.scale >= 2:
        reduce = 2 ** min(3, int(math.log2(plan.scale)))
    try:
        if reduce == 1 and _resample is not None and any(v != int(v) for v in plan.box):
            # a fractional box (eval's centre crop): resize the whole image, keep the window;
            # only the source rows and columns that window reads are decoded
            full, window = _resize_window(plan.box, (height, width), out.shape[1:])
            span = _window_span(full, window, out.shape[1:], (height, width))
            region = decode_box(data, span, (height, width), 1)
            if region is not None:
                pixels, origin = region
                resample_into(pixels, plan.box, out, plan.flip, origin, (height, width))
                return
        region = decode_box(data, plan.box, (height, width), reduce)
    except EOFError as exc:
        raise DecodeError(f"{where}: {exc}; check the file, or replace it") from None
    if region is None:
        pixels, (y0, x0) = decode_rgb(data, where, reduce), (0, 0)
        sy, sx = pixels.shape[0] / height, pixels.shape[1] / width
    else:  # libjpeg's size at 1/reduce scale: ceil(size / reduce)
        pixels, (y0, x0) = region
        sy, sx = -(-height // reduce) / height, -(-width // reduce) / width
    top, left, h, w = plan.box
    resample_into(pixels, (top * sy - y0, left * sx - x0, h * sy, w * sx), out, plan.flip)


def decode_box(data: bytes, box: tuple[float, float, float, float], size: tuple[int, int],
               reduce: int) -> Optional[tuple[np.ndarray, tuple[int, int]]]:
    """Decode only the rows and columns of a JPEG that a whole-pixel ``box`` (top, left,
    height, width in source pixels, inside the ``size`` (height, width) image) covers, at
    1/``reduce`` scale: (pixels, (row, column) of their origin in the reduced image). Any other
    box gets the whole image. None when the data is not a JPEG, fastload._jpeg is not built, or
    libjpeg would rather the whole image were decoded by the usual path (which then reports
    errors)."""
    if _jpeg is None or data[:2] != b"\xff\xd8":
        return None
    top, left, h, w = box
    height, width = size
    if (top < 0 or left < 0 or top + h > height or left + w > width
            or any(v != int(v) for v in box)):
        top, left, h, w = 0, 0, height, width
    y0, x0 = int(top) // reduce, int(left) // reduce
    y1 = min(-(-int(top + h) // reduce), -(-height // reduce))
    x1 = min(-(-int(left + w) // reduce), -(-width // reduce))
    pixels = _jpeg.decode_region(data, reduce, y0, x0, y1 - y0, x1 - x0, _CHANNELS)
    if pixels is None:
        return None
    return np.frombuffer(pixels, np.uint8).reshape(y1 - y0, x1 - x0, _CHANNELS), (y0, x0)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits
        arr = np.asarray(img, dtype=np.uint32) >> 8
        img = Image.fromarray(arr.astype(np.uint8), "L")
    return img.convert("RGB")


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear (PIL's filter) of an (h, w, 3) uint8 array -> (3, *size) uint8."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    if tuple(pixels.shape[:2]) == size:
        return x
    return F.interpolate(x.unsqueeze(0), size=size, mode="bilinear", antialias=True,
                         align_corners=False)[0]


def _resize_window(box: tuple[float, float, float, float], image: tuple[int, int],
                   out_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """For a fractional box: the size the whole image is resized to so the box becomes
    ``out_size``, and the box's (top, left) window in it."""
    top, left, h, w = box
    sy, sx = h / out_size[0], w / out_size[1]
    full = (max(1, round(image[0] / sy)), max(1, round(image[1] / sx)))
    return full, (round(top / sy), round(left / sx))


def _window_span(full: tuple[int, int], window: tuple[int, int], out_size: tuple[int, int],
                 image: tuple[int, int]) -> tuple[int, int, int, int]:
    """The whole-pixel box (top, left, height, width) of the image that the resize to ``full``
    reads for the ``window`` (the taps of fastload._kernels' antialiased filter, + 1 pixel)."""
    spans = []
    for axis in (0, 1):
        size, n = image[axis], full[axis]
        first = max(window[axis], 0)
        last = min(window[axis] + out_size[axis], n) - 1
        if size == n or last < first:
            lo, hi = first, last + 1
        else:
            scale = size / n
            support = max(scale, 1.0)
            lo = int(scale * (first + 0.5) - support + 0.5)
            hi = int(scale * (last + 0.5) + support + 0.5)
        lo, hi = max(0, lo - 1), min(size, hi + 1)
        spans.append((lo, max(hi, lo + 1)))
    (y0, y1), (x0, x1) = spans
    return y0, x0, y1 - y0, x1 - x0


def resample_into(pixels: np.ndarray, box: tuple[float, float, float, float],
                  out: torch.Tensor, flip: bool = False, origin: tuple[int, int] = (0, 0),
                  image: Optional[tuple[int, int]] = None) -> None:
    """Resample the source ``box`` (top, left, height, width) of (h, w, 3 or 4) ``pixels`` (RGB
    or RGBX) into the (3, H, W) ``out``, mirrored left-right when ``flip`` (flip commutes with
    the resampling). ``pixels`` may be a region of a larger ``image`` (height, width) starting
    at ``origin`` (row, column); ``box`` is in the image's coordinates."""
    out_h, out_w = out.shape[1:]
    height, width = image if image is not None else pixels.shape[:2]
    oy, ox = origin
    top, left, h, w = box
    whole = all(abs(v - round(v)) < 1e-6 for v in box)
    if whole and top >= 0 and left >= 0 and top + h <= height and left + w <= width:
        t, l = int(round(top)) - oy, int(round(left)) - ox
        src, full, window = pixels[t:t + int(round(h)), l:l + int(round(w))], (out_h, out_w), (0, 0)
        oy = ox = 0
        height, width = src.shape[:2]
    else:
        # resize the whole image so the box becomes out_size, then crop (zeros outside it)
        src = pixels
        full, window = _resize_window(box, (height, width), (out_h, out_w))
    if _resample is not None and out.is_contiguous():
        src = np.ascontiguousarray(src)
        _resample(src, src.shape[0], src.shape[1], src.shape[2], *full, *window, out.numpy(),
                  out_h, out_w, flip, oy, ox, height, width)
        return
    if (oy, ox) != (0, 0) or src.shape[:2] != (height, width):
        raise ValueError("resample_into: a region of an image needs fastload._kernels")
    src = src[..., :3]
    if full == (out_h, out_w) and window == (0, 0):
        result = _resize(src, (out_h, out_w))
    else:
        resized = _resize(src, full)
        t, l = window
        result = torch.zeros((3, out_h, out_w), dtype=torch.uint8)
        y0, x0 = max(t, 0), max(l, 0)
        y1, x1 = min(t + out_h, full[0]), min(l + out_w, full[1])
        if y1 > y0 and x1 > x0:
            result[:, y0 - t:y1 - t, x0 - l:x1 - l] = resized[:, y0:y1, x0:x1]
    out.copy_(result.flip(-1) if flip else result)
