"""Mixup / CutMix on a finished batch, in torch, on whatever device the batch is on.

One draw per batch (``MixingOp.draw``), the partners from ``mixing.partners``; images are
mixed in place, labels become soft targets. Vectorized: a blend or one box copy per batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..ops.mixing import MixDraw, MixingOp, partners

CPU_ROWS = 4  # rows per pass of the CPU Mixup blend


def mix_images(images: torch.Tensor, draw: MixDraw, perm: np.ndarray) -> None:
    """Mix (B, C, H, W) float ``images`` in place with ``images[perm]``."""
    if draw.kind == "none":
        return
    index = torch.from_numpy(perm).to(images.device)
    if draw.kind == "mixup":
        # on a CPU, a few rows of every image at a time, so the partners' copy stays in
        # cache; on a GPU, one pass
        step = CPU_ROWS if images.device.type == "cpu" else images.shape[2]
        for top in range(0, images.shape[2], step):
            rows = images[:, :, top:top + step]
            other = rows.index_select(0, index)
            rows.mul_(draw.lam).add_(other, alpha=1.0 - draw.lam)
        return
    y0, y1, x0, x1 = draw.box
    if y1 > y0 and x1 > x0:
        images[:, :, y0:y1, x0:x1] = images[:, :, y0:y1, x0:x1].index_select(0, index)


def soft_labels(labels: torch.Tensor, op: MixingOp, draw: MixDraw,
                perm: np.ndarray) -> torch.Tensor:
    """(B,) int64 labels, or (B, num_classes) multi-hot float32 ones -> (B, num_classes)
    float32 soft targets: smoothed (1 -> 1 - s + s/C, 0 -> s/C, as timm's one-hot), mixed."""
    classes = op.num_classes
    off = op.label_smoothing / classes
    on = 1.0 - op.label_smoothing + off
    if labels.dim() == 2:  # multi-hot: every class of the sample is "on"
        if labels.shape[1] != classes:
            from ..errors import SpecError

            raise SpecError(f"{type(op).__name__}: num_classes={classes} but the source's "
                            f"multi-label targets have {labels.shape[1]} classes")
        target = labels.to(torch.float32) * (on - off) + off
    else:
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            from ..errors import SpecError

            raise SpecError(f"{type(op).__name__}: num_classes={classes} but a label is "
                            f"{int(labels.max()) if int(labels.max()) >= classes else int(labels.min())}"
                            "; give the number of classes of the dataset")
        target = torch.full((len(labels), classes), off, dtype=torch.float32, device=labels.device)
        target.scatter_(1, labels.view(-1, 1), on)
    if draw.kind == "none":
        return target
    other = target.index_select(0, torch.from_numpy(perm).to(labels.device))
    return target.mul_(draw.lam).add_(other, alpha=1.0 - draw.lam)


def batch_draw(op: MixingOp, host: Any, height: int, width: int) -> tuple[MixDraw, np.ndarray]:
    """The draw and partners of one host batch (the same wherever it is computed)."""
    draw = op.draw(host.seed, host.epoch, int(host.positions[0]), height, width)
    return draw, partners(np.asarray(host.padded, dtype=bool))
