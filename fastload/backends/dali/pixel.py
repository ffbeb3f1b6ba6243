"""The per-sample ops of the pipeline's ``pixel`` section, lowered to DALI.

fastload draws each sample's steps on the host (``SamplePlan.steps``, the same draws as the
torch backend); the feeder encodes every step into a *slot*, a float32 vector
``[code, value, a0..a5, window_h, window_w]`` (``a0`` is ``1 - value`` for a blend), and the DALI graph runs, per slot, the kernel
whose code the sample carries (DALI conditionals: each ``if`` runs on just the samples that
took it). An op has a fixed number of slots (ColorJitter 4, RandAugment ``num_ops``, the
others 1); code 0 leaves the image as it is.

The kernels follow ``fastload/backends/torch/pixel.py`` (torchvision v2's uint8 arithmetic) in DALI
arithmetic on float32, so most pixels match exactly; the measured differences are in
``tests/test_dali_pixel.py`` and the README. ``gaussian_blur`` is DALI's own (a sampled
Gaussian like torchvision's, at most 1 level apart); Equalize runs the torch backend's numpy
kernel in a ``dl_tensor_python_function`` (DALI's ``equalize`` is OpenCV's formula).

The flip runs after these ops (in ``crop_mirror_normalize``), where the torch backend flips
first: every kernel commutes with a horizontal flip except the geometric ones, whose matrix
the feeder conjugates by the flip (``encode_steps``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ...ops.autoaugment import RandAugment, TrivialAugmentWide
from ...ops.photometric import (ColorJitter, GaussianBlur, RandomGrayscale, RandomSolarize,
                                ThreeAugment, fit_kernel)
from ...ops.spec import Pipeline
from ..pixel_math import AFFINE_KERNELS, LUMA, Matrix, affine_matrix, equalize_planes

SLOT = 10  # code, value, 6 matrix entries (or 1 - value), 2 window sizes

#: The kernels DALI runs, by code (code = index + 1; 0: none).
CODES = ("brightness", "contrast", "saturation", "hue", "grayscale", "solarize", "blur",
         "sharpness", "posterize", "autocontrast", "equalize", "affine")

_AUTOAUGMENT = ("affine", "brightness", "saturation", "contrast", "sharpness", "posterize",
                "solarize", "autocontrast", "equalize")
_THREE = ("grayscale", "solarize", "blur")

#: The per-sample ops the DALI backend runs in DALI (Lambda is the one it refuses).
DALI_PIXEL_OPS: tuple[type, ...] = (ColorJitter, RandomGrayscale, RandomSolarize, GaussianBlur,
                                    ThreeAugment, TrivialAugmentWide, RandAugment)


def op_kernels(op: Any) -> tuple[int, tuple[str, ...]]:
    """(slots, the kernels an op's steps may use): the DALI graph holds just those branches."""
    if isinstance(op, ColorJitter):
        names = ("brightness", "contrast", "saturation", "hue")
        return 4, tuple(n for n in names if getattr(op, n) is not None)
    if isinstance(op, RandAugment):
        return op.num_ops, _AUTOAUGMENT
    if isinstance(op, TrivialAugmentWide):
        return 1, _AUTOAUGMENT
    if isinstance(op, ThreeAugment):
        return 1, _THREE
    kernel = {RandomGrayscale: "grayscale", RandomSolarize: "solarize", GaussianBlur: "blur"}
    return 1, (kernel[type(op)],)


def dali_matrix(matrix: Matrix, width: int, flip: bool) -> list[float]:
    """An index-space matrix (``pixel_math.affine_matrix``) as DALI's ``warp_affine`` wants it:
    pixel centres at +0.5, nearest = floor, so source = index + 0.5. With ``flip``, the matrix
    for the unflipped image whose flip equals the kernel applied to the flipped image."""
    m0, m1, c0, m3, m4, c1 = matrix
    if flip:  # source x' = W - 1 - src_x(W - 1 - x, y), source y' = src_y(W - 1 - x, y)
        m0, m1, c0, m3, m4, c1 = (m0, -m1, width - 1 - m0 * (width - 1) - c0,
                                  -m3, m4, m3 * (width - 1) + c1)
    return [m0, m1, c0 + 0.5 - 0.5 * (m0 + m1), m3, m4, c1 + 0.5 - 0.5 * (m3 + m4)]


def _encode(name: str, value: Any, size: tuple[int, int], flip: bool) -> np.ndarray:
    slot = np.zeros(SLOT, np.float32)
    height, width = size
    if name in AFFINE_KERNELS:
        slot[0] = CODES.index("affine") + 1
        slot[2:8] = dali_matrix(affine_matrix(name, value, height, width), width, flip)
        return slot
    slot[0] = CODES.index(name) + 1
    if name == "blur":
        kx, ky, sigma = value
        slot[1], slot[8], slot[9] = sigma, fit_kernel(ky, height), fit_kernel(kx, width)
    elif name == "posterize":
        slot[1] = (0xFF << (8 - int(value))) & 0xFF
    elif value is not None:
        slot[1] = value
        slot[2] = 1.0 - value  # a blend's other weight, rounded once as torch's is
    return slot


def encode_steps(pipeline: Pipeline, steps: tuple, flip: bool) -> dict[str, np.ndarray]:
    """The external_source columns of one sample: ``slot{k}_{j}`` for op k's j-th slot."""
    out: dict[str, np.ndarray] = {}
    size = pipeline.output_size
    for k, (op, op_steps) in enumerate(zip(pipeline.pixel, steps)):
        slots, _ = op_kernels(op)
        if len(op_steps) > slots:
            raise AssertionError(f"{op}: {len(op_steps)} steps for {slots} slots")
        for j in range(slots):
            out[f"slot{k}_{j}"] = (_encode(*op_steps[j], size, flip) if j < len(op_steps)
                                   else np.zeros(SLOT, np.float32))
    return out


def slot_names(pipeline: Pipeline) -> list[str]:
    return [f"slot{k}_{j}" for k, op in enumerate(pipeline.pixel)
            for j in range(op_kernels(op)[0])]


# --- the graph: HWC uint8 in, HWC uint8 out --------------------------------------------------

class Slot(NamedTuple):
    """One slot's column: ``args`` on the CPU (for DALI argument inputs), ``values`` where the
    images are (for arithmetic with them); the output size and the images' device."""

    args: Any
    values: Any
    size: tuple[int, int]
    device: str


def _float(x: Any) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return fn.cast(x, dtype=types.FLOAT)


def _uint8(x: Any) -> Any:
    """Clamp to [0, 255] and truncate (torch's float -> uint8 of a non-negative value)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    return fn.cast(dmath.floor(dmath.clamp(x, 0.0, 255.0)), dtype=types.UINT8)


def _grey(x: Any) -> Any:
    """ITU-R 601 luma of a float HWC image, (H, W, 1)."""
    return x[:, :, 0:1] * LUMA[0] + x[:, :, 1:2] * LUMA[1] + x[:, :, 2:3] * LUMA[2]


def _brightness(x: Any, slot: Slot) -> Any:
    return _uint8(_float(x) * slot.values[1])


def _contrast(x: Any, slot: Slot) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath

    f = _float(x)
    mean = fn.reductions.mean(dmath.floor(_grey(f)))
    return _uint8(f * slot.values[1] + mean * slot.values[2])


def _saturation(x: Any, slot: Slot) -> Any:
    import nvidia.dali.math as dmath

    f = _float(x)
    return _uint8(f * slot.values[1] + dmath.floor(_grey(f)) * slot.values[2])


def _mod6(x: Any) -> Any:
    import nvidia.dali.math as dmath

    return x - dmath.floor(x / 6.0) * 6.0


def _hue(x: Any, slot: Slot) -> Any:
    """HSV hue rotation by ``value`` turns, as ``pixel.hue`` (masks stand in for ``where``)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath

    f = _float(x) / 255.0
    r, g, b = f[:, :, 0:1], f[:, :, 1:2], f[:, :, 2:3]
    value = dmath.max(dmath.max(r, g), b)
    delta = value - dmath.min(dmath.min(r, g), b)
    some = _float(delta > 0.0)
    safe = delta + (1.0 - some)
    is_r = _float(value == r)
    is_g = (1.0 - is_r) * _float(value == g)
    is_b = 1.0 - is_r - is_g
    sixths = is_r * ((g - b) / safe) + is_g * ((b - r) / safe + 2.0) + is_b * ((r - g) / safe + 4.0)
    sixths = _mod6(sixths * some + slot.values[1] * 6.0)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = _mod6(sixths + n)
        k = dmath.clamp(dmath.min(k, 4.0 - k), 0.0, 1.0)
        channels.append(value - delta * k)
    return _uint8(fn.cat(*channels, axis=2) * (256.0 - 1e-3))


def _grayscale(x: Any, slot: Slot) -> Any:
    import nvidia.dali.fn as fn

    grey = _uint8(_grey(_float(x)))
    return fn.cat(grey, grey, grey, axis=2)


def _solarize(x: Any, slot: Slot) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    v = fn.cast(x, dtype=types.INT16)
    high = fn.cast(v >= slot.values[1], dtype=types.INT16)
    return fn.cast(v + high * (255 - 2 * v), dtype=types.UINT8)


def _blur(x: Any, slot: Slot) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return fn.gaussian_blur(x, sigma=slot.args[1],
                            window_size=fn.cast(slot.args[8:10], dtype=types.INT32))


def _sharpness(x: Any, slot: Slot) -> Any:
    """Blend with the 3x3 smoothing (1s around a 5, / 13, rounded) inside the border; the
    border rows and columns keep their pixels (a constant mask of the output size)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    height, width = slot.size
    kernel = np.ones((3, 3), np.float32)
    kernel[1, 1] = 5.0
    inner = np.zeros((height, width, 1), np.float32)
    inner[1:-1, 1:-1] = 1.0
    f = _float(x)
    smooth = dmath.floor(fn.filter(f, kernel, dtype=types.FLOAT) / 13.0 + 0.5)
    mask = types.Constant(inner, device=slot.device)
    blended = f * slot.values[1] + smooth * slot.values[2]
    return _uint8(blended * mask + f * (1.0 - mask))


def _posterize(x: Any, slot: Slot) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return x & fn.cast(slot.values[1], dtype=types.UINT8)


def _autocontrast(x: Any, slot: Slot) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath

    f = _float(x)
    low, high = fn.reductions.min(f, axes=[0, 1]), fn.reductions.max(f, axes=[0, 1])
    flat = _float(high == low)
    stretched = dmath.floor(dmath.clamp((f - low) / ((high - low) / 255.0 + flat), 0.0, 255.0))
    return _uint8(stretched * (1.0 - flat) + f * flat)


def equalize_hwc(capsule: Any) -> Any:
    """``dl_tensor_python_function`` body: the torch backend's equalize (PIL's formula) on one
    HWC uint8 image, CPU or GPU (copied to the host and back; DALI's own ``equalize`` follows
    OpenCV, which ignores the darkest level's count: up to ~14 levels apart after a shear)."""
    import torch
    from torch.utils.dlpack import from_dlpack, to_dlpack

    image = from_dlpack(capsule)
    host = image.cpu().numpy()
    planes = equalize_planes(np.ascontiguousarray(host.reshape(-1, 3).T))
    out = torch.from_numpy(np.ascontiguousarray(planes.T).reshape(host.shape))
    if image.is_cuda:
        out = out.to(image.device)
        torch.cuda.current_stream(image.device).synchronize()
    return to_dlpack(out)


def _equalize(x: Any, slot: Slot) -> Any:
    import nvidia.dali.fn as fn

    return fn.dl_tensor_python_function(x, function=equalize_hwc, batch_processing=False,
                                        output_layouts="HWC", device=slot.device)


def _affine(x: Any, slot: Slot) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return fn.warp_affine(x, matrix=fn.reshape(slot.args[2:8], shape=[2, 3]), inverse_map=True,
                          fill_value=0, interp_type=types.INTERP_NN)


_KERNELS = {"brightness": _brightness, "contrast": _contrast, "saturation": _saturation,
            "hue": _hue, "grayscale": _grayscale, "solarize": _solarize, "blur": _blur,
            "sharpness": _sharpness, "posterize": _posterize, "autocontrast": _autocontrast,
            "equalize": _equalize, "affine": _affine}


def pixel_ops(images: Any, inputs: dict[str, Any], pipeline: Pipeline, gpu: bool) -> Any:
    """The per-sample ops in pipeline order on uint8 HWC images (needs a pipeline built with
    ``enable_conditionals=True``): per slot, the one kernel the sample's code names."""
    for k, op in enumerate(pipeline.pixel):
        slots, kernels = op_kernels(op)
        for j in range(slots):
            column = inputs[f"slot{k}_{j}"]
            slot = Slot(column, column.gpu() if gpu else column, pipeline.output_size,
                        "gpu" if gpu else "cpu")
            code = column[0]
            for name in kernels:
                if code == float(CODES.index(name) + 1):
                    images = _KERNELS[name](images, slot)
    return images
