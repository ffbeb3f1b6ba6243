"""Per-sample ops on the uint8 crop (the pipeline's ``pixel`` section), in the torch backend's
workers: each op gets the (3, H, W) uint8 image a sample was rendered into and changes it in
place."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import TransformError
from ..user_ops import Lambda

LAMBDA_KEY = 0x1A3B  # separates a Lambda's generator from the sample's plan draws


def lambda_rng(seed: int, epoch: int, position: int, op_index: int) -> np.random.Generator:
    """The generator a Lambda gets: (seed, epoch, position) and the op's place only."""
    return np.random.Generator(np.random.Philox(
        np.random.SeedSequence([seed, epoch, position, LAMBDA_KEY, op_index])))


def apply_pixel_ops(ops: tuple[Any, ...], image: torch.Tensor, seed: int, epoch: int,
                    position: int, where: str) -> None:
    """Run the per-sample ops on ``image`` in place, in pipeline order."""
    for k, op in enumerate(ops):
        if isinstance(op, Lambda):
            _run_lambda(op, image, lambda_rng(seed, epoch, position, k), where)


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
