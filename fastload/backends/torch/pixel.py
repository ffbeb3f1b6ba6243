"""Per-sample ops on the uint8 crop (the pipeline's ``pixel`` section), in the torch backend's
workers: the plan's steps (drawn in ``fastload.ops.photometric``) and the user's Lambdas run in
pipeline order on the (3, H, W) uint8 image a sample was rendered into, in place.

The kernels follow torchvision v2's arithmetic on uint8 tensors: blends in float32, clamped
to [0, 255] and truncated back to uint8; the grey of contrast and saturation floored; hue in
HSV on x / 255 and back with x * (256 - 1e-3) truncated.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import TransformError
from ...ops.photometric import fit_kernel
from ...ops.user_ops import Lambda
from ..pixel_math import (AFFINE_KERNELS, LUMA, Matrix, affine_matrix, equalize_planes,
                          nearest_sources)

try:
    from ..._kernels import affine_nearest as _affine_nearest
except ImportError:  # pragma: no cover - the C extension is optional (numpy does the same)
    _affine_nearest = None

LAMBDA_KEY = 0x1A3B  # separates a Lambda's generator from the sample's plan draws


def lambda_rng(seed: int, epoch: int, position: int, op_index: int) -> np.random.Generator:
    """The generator a Lambda gets: (seed, epoch, position) and the op's place only."""
    return np.random.Generator(np.random.Philox(
        np.random.SeedSequence([seed, epoch, position, LAMBDA_KEY, op_index])))


def apply_steps(ops: tuple[Any, ...], steps: tuple[Any, ...], image: torch.Tensor, seed: int,
                epoch: int, position: int, where: str) -> None:
    """Run a plan's steps (one tuple per pixel op) on ``image`` in place: ``("lambda", k)``
    runs the pipeline's k-th pixel op (a Lambda), any other step the kernel of that name."""
    for op_steps in steps:
        for name, value in op_steps:
            if name == "lambda":
                _run_lambda(ops[value], image, lambda_rng(seed, epoch, position, value), where)
            else:
                image.copy_(KERNELS[name](image, value))


def _run_lambda(op: Lambda, image: torch.Tensor, rng: np.random.Generator, where: str) -> None:
    hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    try:
        result = op.fn(hwc, rng)
    except Exception as exc:  # noqa: BLE001 - the user's function: any error, named
        raise TransformError(f"{op.name}: {where}: raised {type(exc).__name__}: {exc}") from None
    if not isinstance(result, np.ndarray) or result.dtype != np.uint8 or \
            result.shape != hwc.shape:
        got = (f"{result.dtype} {tuple(result.shape)}" if isinstance(result, np.ndarray)
               else type(result).__name__)
        raise TransformError(f"{op.name}: {where}: returned {got}; expected uint8 "
                             f"{tuple(hwc.shape)} (the image it was given)")
    image.copy_(torch.from_numpy(result).permute(2, 0, 1))


# --- kernels: (3, H, W) uint8 -> (3, H, W) uint8 -----------------------------------------------

def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(0, 255).to(torch.uint8)


def _blend(image: torch.Tensor, other: Any, ratio: float) -> torch.Tensor:
    return _to_uint8(image.float().mul_(ratio).add_(other * (1.0 - ratio)))


def _grey(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image.float().unbind(0)
    return (r * LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2])


def brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    return _to_uint8(image.float().mul_(factor))


def contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    return _blend(image, float(_grey(image).floor_().mean()), factor)


def saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    return _blend(image, _grey(image).floor_(), factor)


def grayscale(image: torch.Tensor, _: Any = None) -> torch.Tensor:
    return _grey(image).to(torch.uint8).expand_as(image)


def solarize(image: torch.Tensor, threshold: float) -> torch.Tensor:
    levels = np.arange(256, dtype=np.uint8)
    lut = np.where(levels >= threshold, 255 - levels, levels).astype(np.uint8)
    return torch.from_numpy(lut.take(image.numpy()))


def hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns (HSV as PIL/colorsys define it) on x / 255, then back
    with x * (256 - 1e-3) truncated (torchvision's float -> uint8)."""
    x = image.float().div_(255.0)
    r, g, b = x.unbind(0)
    value, _ = x.max(0)
    delta = value - x.min(0)[0]  # value * saturation
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    sixths = torch.where(value == r, (g - b) / safe,
                         torch.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    sixths = torch.where(delta > 0, sixths, torch.zeros_like(sixths))
    sixths = torch.remainder(sixths + shift * 6.0, 6.0)
    out = torch.empty_like(x)
    for channel, n in enumerate((5.0, 3.0, 1.0)):  # HSV -> RGB: v - v s clamp(min(k, 4 - k))
        k = torch.remainder(sixths + n, 6.0)
        torch.minimum(k, 4.0 - k, out=k).clamp_(0.0, 1.0)
        out[channel] = value - delta * k
    return out.mul_(256.0 - 1e-3).to(torch.uint8)


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    k = torch.exp(-(x / sigma) ** 2 / 2)
    return k / k.sum()


def blur(image: torch.Tensor, value: tuple[int, int, float]) -> torch.Tensor:
    """Separable Gaussian, ``(kernel_x, kernel_y, sigma)``, reflect padding (torchvision's);
    a kernel larger than the image is cut to fit (reflect padding needs size < 2 * side)."""
    kx, ky, sigma = value
    _, height, width = image.shape
    kx, ky = fit_kernel(kx, width), fit_kernel(ky, height)
    x = image.float().unsqueeze(1)  # (3, 1, H, W): one channel per batch item
    x = F.pad(x, (kx // 2, kx // 2, ky // 2, ky // 2), mode="reflect")
    x = F.conv2d(x, _gaussian(kx, sigma).view(1, 1, 1, kx))
    x = F.conv2d(x, _gaussian(ky, sigma).view(1, 1, ky, 1))
    return _to_uint8(x.squeeze(1).round_())


def sharpness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the 3x3 smoothing (1s around a 5, / 13, rounded); the border row and column
    keep their pixels, as PIL and torchvision do. The 3x3 sum is two shifted-add passes."""
    _, height, width = image.shape
    if height <= 2 or width <= 2:
        return image
    x = image.float()
    rows = x[:, :-2] + x[:, 1:-1] + x[:, 2:]
    inner = x[:, 1:-1, 1:-1]
    smooth = (rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]).add_(inner, alpha=4.0)
    smooth.div_(13.0).round_()
    inner.mul_(factor).add_(smooth, alpha=1.0 - factor)
    return _to_uint8(x)


def posterize(image: torch.Tensor, bits: int) -> torch.Tensor:
    return image & ((0xFF << (8 - bits)) & 0xFF)


def autocontrast(image: torch.Tensor, _: Any = None) -> torch.Tensor:
    """Stretch each channel's [min, max] to [0, 255] (a flat channel is left as it is):
    torchvision's float32 arithmetic, applied through a 256-entry table per channel."""
    pixels = image.numpy()
    out = np.empty_like(pixels)
    levels = np.arange(256, dtype=np.float32)
    for c in range(3):
        low, high = np.float32(pixels[c].min()), np.float32(pixels[c].max())
        if high == low:
            out[c] = pixels[c]
            continue
        table = np.clip((levels - low) / ((high - low) / np.float32(255.0)), 0, 255)
        out[c] = table.astype(np.uint8).take(pixels[c])
    return torch.from_numpy(out)


def equalize(image: torch.Tensor, _: Any = None) -> torch.Tensor:
    return torch.from_numpy(equalize_planes(image.numpy().reshape(3, -1))).view_as(image)


def warp_nearest(image: torch.Tensor, matrix: Matrix) -> torch.Tensor:
    """Nearest sampling through an index-space matrix, fill 0, rounded half to even as
    grid_sample does. fastload._kernels does it in one pass; numpy the same arithmetic where
    the extension is not built."""
    _, height, width = image.shape
    m0, m1, c0, m3, m4, c1 = matrix
    src = image.contiguous()
    out = torch.empty_like(src)
    if _affine_nearest is not None:
        _affine_nearest(src.numpy(), out.numpy(), height, width, m0, m1, c0, m3, m4, c1)
        return out
    flat = nearest_sources(matrix, height, width)
    padded = np.zeros((3, height * width + 1), np.uint8)  # the last pixel: the fill
    padded[:, :-1] = src.numpy().reshape(3, -1)
    out.numpy()[:] = np.take(padded, flat, axis=1)
    return out


def _geometric(kernel: str) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    def run(image: torch.Tensor, value: Any) -> torch.Tensor:
        return warp_nearest(image, affine_matrix(kernel, value, *image.shape[1:]))
    run.__name__ = kernel
    return run


KERNELS: dict[str, Callable[[torch.Tensor, Any], torch.Tensor]] = {
    "brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue,
    "grayscale": grayscale, "solarize": solarize, "blur": blur, "sharpness": sharpness,
    "posterize": posterize, "autocontrast": autocontrast, "equalize": equalize,
    **{name: _geometric(name) for name in AFFINE_KERNELS},
}
