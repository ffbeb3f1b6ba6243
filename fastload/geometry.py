"""What happens to one sample, decided before its pixels are decoded.

``plan_sample`` turns a pipeline, the image's (height, width) (from its header) and the sample's
random generator into a ``SamplePlan``: the source box to resample, the output size, the flip and
the erasing rectangle. The torch backend executes plans with PIL; the DALI backend feeds the same
plans to DALI, so both backends crop the same boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import draws
from .ops import CenterCrop, RandomResizedCrop, Resize
from .spec import Pipeline
from .user_ops import Lambda

NO_ERASE = (0, 0, 0, 0)


@dataclass(frozen=True)
class SamplePlan:
    box: tuple[float, float, float, float]  # top, left, height, width in source pixels
    out_size: tuple[int, int]               # height, width
    flip: bool = False
    erase: tuple[int, int, int, int] = NO_ERASE  # top, left, height, width in output pixels
    reduced_decode: bool = False  # may the decoder downscale (JPEG DCT scaling) first?
    steps: tuple = ()  # per pixel op, in order: its (kernel, value) steps | (("lambda", k),)

    @property
    def scale(self) -> float:
        """Source pixels per output pixel along the less-reduced axis (>= 2 allows DCT scaling)."""
        return min(self.box[2] / self.out_size[0], self.box[3] / self.out_size[1])


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes ``size``, the longer scales (floor)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def plan_sample(pipeline: Pipeline, height: int, width: int,
                rng: Optional[np.random.Generator]) -> SamplePlan:
    """The plan for one sample; ``rng`` may be None only for a pipeline with no random op."""
    geometry = pipeline.geometry
    first = geometry[0]
    out_h, out_w = pipeline.output_size
    if isinstance(first, RandomResizedCrop):
        top, left, h, w = draws.crop_box(rng, height, width, first.scale, first.ratio)
        box = (float(top), float(left), float(h), float(w))
    elif isinstance(first, Resize) and len(geometry) == 1:
        box = (0.0, 0.0, float(height), float(width))
    elif isinstance(first, Resize):
        new_h, new_w = resized_size(height, width, first.size)  # type: ignore[arg-type]
        top, left, h, w = draws.center_box(new_h, new_w, (out_h, out_w))
        sy, sx = height / new_h, width / new_w
        box = (top * sy, left * sx, h * sy, w * sx)
    else:
        assert isinstance(first, CenterCrop)
        box = draws.center_box(height, width, (out_h, out_w))
    flip = draws.flip(rng, pipeline.flip.p) if pipeline.flip is not None else False
    steps = pixel_steps(pipeline, rng)
    erase = NO_ERASE
    if pipeline.erasing is not None:
        e = pipeline.erasing
        erase = draws.erase_box(rng, out_h, out_w, e.p, e.scale, e.ratio)
    return SamplePlan(box=box, out_size=(out_h, out_w), flip=flip, erase=erase,
                      reduced_decode=isinstance(first, RandomResizedCrop), steps=steps)


def pixel_steps(pipeline: Pipeline, rng: Optional[np.random.Generator]) -> tuple:
    """Each per-sample op's steps, drawn in pipeline order (one tuple per op); a Lambda's are
    ``(("lambda", k),)`` (it draws from a generator of its own)."""
    return tuple((("lambda", k),) if isinstance(op, Lambda)
                 else op.steps(rng, pipeline.output_size)
                 for k, op in enumerate(pipeline.pixel))


def is_random(pipeline: Pipeline) -> bool:
    """Whether any op draws random numbers (so plans need a per-sample generator)."""
    return (isinstance(pipeline.geometry[0], RandomResizedCrop) or pipeline.flip is not None
            or pipeline.erasing is not None
            or any(not isinstance(op, Lambda) for op in pipeline.pixel))
