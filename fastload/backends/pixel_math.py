"""The arithmetic of the per-sample ops that both engines share, free of torch and DALI: the
affine ops' index-space maps (torchvision's inverse affine), the luma weights of the grey
conversions, and PIL's histogram equalization. The torch engine's kernels
(``backends/torch/pixel.py``) and the DALI lowering (``backends/dali/pixel.py``) both call it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Matrix = tuple[float, float, float, float, float, float]
LUMA = (0.2989, 0.587, 0.114)
AFFINE_KERNELS = ("shear_x", "shear_y", "translate", "rotate")


def equalize_planes(planes: np.ndarray) -> np.ndarray:
    """PIL's histogram equalization of each row of a (C, N) uint8 array: level v -> (pixels
    below v + step // 2) // step, where step = (pixels - pixels at the top level) // 255; a
    step of 0 leaves the row as it is."""
    out = np.empty_like(planes)
    for c, plane in enumerate(planes):
        hist = np.bincount(plane, minlength=256)
        used = hist[hist > 0]
        step = (int(used.sum()) - int(used[-1])) // 255 if len(used) > 1 else 0
        if step == 0:
            out[c] = plane
            continue
        lut = (np.concatenate(([0], np.cumsum(hist)[:-1])) + step // 2) // step
        out[c] = np.minimum(lut, 255).astype(np.uint8).take(plane)
    return out


def _affine_matrix(height: int, width: int, angle: float, translate: tuple[int, int],
                   shear: tuple[float, float], corner: bool) -> Matrix:
    """torchvision's inverse affine map, in pixel indices: output pixel (x, y) samples source
    pixel (m0 x + m1 y + c0, m3 x + m4 y + c1), rounded. The map takes each output pixel centre
    (coordinates centred on the image; on its top-left corner when ``corner``) through
    rotation ``angle`` (degrees, clockwise), ``shear`` (degrees) and ``translate`` (pixels)."""
    cx, cy = (-width * 0.5, -height * 0.5) if corner else (0.0, 0.0)
    rot, sx, sy = (math.radians(v) for v in (angle, *shear))
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    tx, ty = translate
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    # in pixel indices: source = m . (index + 0.5 - size / 2) + size / 2 - 0.5
    ox, oy = 0.5 - width * 0.5, 0.5 - height * 0.5
    c0 = m[0] * ox + m[1] * oy + m[2] + width * 0.5 - 0.5
    c1 = m[3] * ox + m[4] * oy + m[5] + height * 0.5 - 0.5
    return (m[0], m[1], c0, m[3], m[4], c1)


def affine_matrix(kernel: str, value: Any, height: int, width: int) -> Matrix:
    """The index-space matrix of one geometric step (``AFFINE_KERNELS``) on a height x width
    image."""
    if kernel == "shear_x":
        return _affine_matrix(height, width, 0.0, (0, 0), (value, 0.0), corner=True)
    if kernel == "shear_y":
        return _affine_matrix(height, width, 0.0, (0, 0), (0.0, value), corner=True)
    if kernel == "translate":
        return _affine_matrix(height, width, 0.0, value, (0.0, 0.0), corner=False)
    assert kernel == "rotate"  # counter-clockwise by ``value`` degrees about the centre
    return _affine_matrix(height, width, -value, (0, 0), (0.0, 0.0), corner=False)


def nearest_sources(matrix: Matrix, height: int, width: int) -> np.ndarray:
    """For each output pixel of an affine op, the flat index of the source pixel it samples
    (nearest, rounded half to even as grid_sample does), ``height * width`` outside the image
    (where the caller puts its fill)."""
    m0, m1, c0, m3, m4, c1 = matrix
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)[:, None]
    src_x = np.rint(m0 * xs + (m1 * ys + c0))
    src_y = np.rint(m3 * xs + (m4 * ys + c1))
    inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
    return np.where(inside, src_y * width + src_x, height * width).astype(np.intp)
