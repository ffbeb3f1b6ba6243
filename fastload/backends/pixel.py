"""Per-sample ops on the uint8 crop (the pipeline's ``pixel`` section), in the torch backend's
workers: the plan's steps (drawn in ``fastload.photometric``) and the user's Lambdas run in
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

from ..errors import TransformError
from ..user_ops import Lambda

LAMBDA_KEY = 0x1A3B  # separates a Lambda's generator from the sample's plan draws
_LUMA = (0.2989, 0.587, 0.114)


def lambda_rng(seed: int, epoch: int, position: int, op_index: int) -> np.random.Generator:
    """The generator a Lambda gets: (seed, epoch, position) and the op's place only."""
    return np.random.Generator(np.random.Philox(
        np.random.SeedSequence([seed, epoch, position, LAMBDA_KEY, op_index])))


def apply_steps(ops: tuple[Any, ...], steps: tuple[Any, ...], image: torch.Tensor, seed: int,
                epoch: int, position: int, where: str) -> None:
    """Run a plan's steps on ``image`` in place: ``("lambda", k)`` runs the pipeline's k-th
    pixel op (a Lambda), any other step the kernel of that name."""
    for name, value in steps:
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
    return (r * _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2])


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
    """Rotate the hue by ``shift`` turns (HSV, as PIL's conversion)."""
    x = image.float().div_(255.0)
    maxc, _ = x.max(0)
    minc, _ = x.min(0)
    span = maxc - minc
    flat = span == 0
    safe = torch.where(flat, torch.ones_like(span), span)
    sat = span / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    r, g, b = ((maxc - x) / safe).unbind(0)  # distance of each channel from the max, scaled
    h = torch.where(maxc == x[0], b - g, torch.where(maxc == x[1], 2.0 + r - b, 4.0 + g - r))
    h = torch.where(flat, torch.zeros_like(h), h)
    h = (h / 6.0 + shift) % 1.0
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    v = maxc
    p, q, t = v * (1 - sat), v * (1 - sat * f), v * (1 - sat * (1 - f))
    table = torch.stack([torch.stack(c) for c in (
        (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])  # (6, 3, H, W)
    out = table.gather(0, i.expand(1, 3, *i.shape)).squeeze(0)
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
    kx, ky = min(kx, 2 * (width // 2) - 1 or 1), min(ky, 2 * (height // 2) - 1 or 1)
    x = image.float().unsqueeze(1)  # (3, 1, H, W): one channel per batch item
    x = F.pad(x, (kx // 2, kx // 2, ky // 2, ky // 2), mode="reflect")
    x = F.conv2d(x, _gaussian(kx, sigma).view(1, 1, 1, kx))
    x = F.conv2d(x, _gaussian(ky, sigma).view(1, 1, ky, 1))
    return _to_uint8(x.squeeze(1).round_())


KERNELS: dict[str, Callable[[torch.Tensor, Any], torch.Tensor]] = {
    "brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue,
    "grayscale": grayscale, "solarize": solarize, "blur": blur,
}
