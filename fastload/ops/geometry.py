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


def plan_sample(pipeline: Pipeline, height: int, width: int,
                rng: Optional[np.random.Generator]) -> SamplePlan:
    """The plan for one sample; ``rng`` may be None only for a pipeline with no random op."""
    geometry = pipeline.geometry
    out_h, out_w = geometry.output_size
    if geometry.random_crop is not None:
        scale, ratio = geometry.random_crop
        top, left, h, w = draws.crop_box(rng, height, width, scale, ratio)
        box = (float(top), float(left), float(h), float(w))
    elif geometry.crop is None:  # Resize((h, w)): the whole image
        box = (0.0, 0.0, float(height), float(width))
    else:  # [Resize] + CenterCrop: the centre box of the resized image, in source pixels
        new_h, new_w = geometry.resized(height, width)
        top, left, h, w = draws.center_box(new_h, new_w, (out_h, out_w))
        sy, sx = height / new_h, width / new_w
        box = (top * sy, left * sx, h * sy, w * sx)
    flip = draws.flip(rng, pipeline.flip.p) if pipeline.flip is not None else False
    steps = pixel_steps(pipeline, rng)
    erase = NO_ERASE
    if pipeline.erasing is not None:
        e = pipeline.erasing
        erase = draws.erase_box(rng, out_h, out_w, e.p, e.scale, e.ratio)
    return SamplePlan(box=box, out_size=(out_h, out_w), flip=flip, erase=erase,
                      reduced_decode=geometry.random, steps=steps)


def pixel_steps(pipeline: Pipeline, rng: Optional[np.random.Generator]) -> tuple:
    """Each per-sample op's steps, drawn in pipeline order (one tuple per op); a Lambda's are
    ``(("lambda", k),)`` (it draws from a generator of its own)."""
    return tuple((("lambda", k),) if isinstance(op, Lambda)
                 else op.steps(rng, pipeline.output_size)
                 for k, op in enumerate(pipeline.pixel))


def is_random(pipeline: Pipeline) -> bool:
    """Whether any op draws random numbers (so plans need a per-sample generator)."""
    return (pipeline.at_epoch(0).geometry.random or pipeline.flip is not None
            or pipeline.erasing is not None
            or any(not isinstance(op, Lambda) for op in pipeline.pixel))
