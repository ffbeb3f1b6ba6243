"""Targets beyond one class index, shared by both backends: multi-label, masks, boxes, fields.

A source's ``read(i)`` gives ``(bytes, label)`` or ``(bytes, label, extras)``:

- ``label``: a class index (int), a list of class indices (a multi-label source: one that says
  ``multi_label = True`` and ``num_classes``), or -1 (no image-level label, e.g. segmentation).
- ``extras`` (a dict): ``"mask"``, the segmentation mask (an encoded image, PNG in mode L or
  P, or an (H, W) integer array, the image's size); ``"boxes"``, (N, 4) xyxy in the image's
  pixels, with ``"box_labels"`` (N,) ints; any other name is a per-sample field (a number or a
  small array of one shape), delivered by name.

Masks and boxes follow the sample's ``SamplePlan``: the crop box, the resize, the flip and the
geometric steps of TrivialAugment / RandAugment. Masks are sampled nearest (torch's
``interpolate(mode="nearest")``, what torchvision v2 does to a ``tv_tensors.Mask``; the affine
steps round half to even as the image's), and what lies outside the image is
``ignore_index``; photometric ops and erasing leave them alone. Boxes are mapped exactly,
clipped to the output and dropped when narrower or lower than ``min_box_size`` pixels (as
torchvision's ``SanitizeBoundingBoxes``); an affine step maps a box to the enclosing box of its
mapped corners. A batch's boxes are padded to its largest count: ``boxes`` (B, N, 4) float32,
``box_labels`` (B, N) int64 (-1 in padding), ``box_counts`` (B,).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import torch

from ..errors import SourceError
from ..target_info import TARGET_KEYS, check_boxes, decode_mask, split_read
from ..ops import draws
from ..ops.geometry import SamplePlan
from ..ops.spec import Pipeline
from .pixel_math import AFFINE_KERNELS, affine_matrix, nearest_sources

try:
    from .._kernels import mask_crop_nearest as _mask_crop_nearest
except ImportError:  # pragma: no cover - the C extension is optional: numpy does the same
    _mask_crop_nearest = None

class TargetOptions(NamedTuple):
    """What the loader knows of the targets: from the source and fl.loader's arguments."""

    multi_label: bool = False
    num_classes: Optional[int] = None
    ignore_index: int = 255
    min_box_size: float = 1.0
    masks: bool = False  # the source says its samples carry masks (``has_masks``)

    @classmethod
    def of(cls, source: Any, ignore_index: int = 255, min_box_size: float = 1.0) -> "TargetOptions":
        multi = bool(getattr(source, "multi_label", False))
        classes = getattr(source, "num_classes", None)
        if classes is None and getattr(source, "classes", None):
            classes = len(source.classes)
        if multi and not classes:
            raise SourceError(f"{source.describe()}: multi-label targets need the number of "
                              "classes; pass num_classes= to the source")
        return cls(multi, classes, ignore_index, min_box_size,
                   bool(getattr(source, "has_masks", False)))


class HostTargets(NamedTuple):
    """A batch's targets besides its labels, on the host (numpy; masks a torch tensor)."""

    masks: Any = None        # uint8 (B, H, W) or None
    boxes: Any = None        # float32 (B, N, 4) or None
    box_labels: Any = None   # int64 (B, N), -1 in padding
    box_counts: Any = None   # int64 (B,)
    fields: Any = None       # {name: ndarray (B, ...) | list}
    pooled: bool = False     # the masks are int64 in the producer's mask pool, at the slot


class TargetBatch:
    """Collects one batch's labels and targets, sample by sample (``add`` may be called again
    for a slot when on_error="skip" replaced its sample)."""

    def __init__(self, count: int, pipeline: Pipeline, options: TargetOptions,
                 alloc: Optional[Callable[[tuple[int, ...]], torch.Tensor]] = None,
                 pooled: bool = False) -> None:
        """``alloc(shape)``: a tensor for the batch's masks (in a torch worker: shared memory,
        so sending them copies nothing; ``pooled``: the producer's int64 mask buffer of the
        batch's slot, which is not sent at all)."""
        self.pooled = pooled
        self.count, self.pipeline, self.options = count, pipeline, options
        self.out_size = pipeline.output_size
        self.labels = (np.zeros((count, options.num_classes), np.float32) if options.multi_label
                       else np.empty(count, np.int64))
        self._alloc = alloc or (lambda shape: torch.empty(shape, dtype=torch.uint8))
        self._masks: Optional[torch.Tensor] = None  # made on the first mask
        self._has_masks = np.zeros(count, bool)
        self._boxes: list[Optional[tuple[np.ndarray, np.ndarray]]] = [None] * count
        self._fields: dict[str, list[Any]] = {}

    def add(self, k: int, label: Any, extras: dict, plan: SamplePlan, size: tuple[int, int],
            where: str) -> None:
        """Sample ``k``'s label and extras, through ``plan`` (the image is ``size`` (h, w))."""
        self._label(k, label, where)
        mask = extras.get("mask")
        if mask is not None:
            self._mask(k, mask, plan, size, where)
            self._has_masks[k] = True
        boxes = extras.get("boxes")
        if boxes is not None:
            boxes, labels = check_boxes(boxes, extras.get("box_labels"), size, where)
            self._boxes[k] = transform_boxes(boxes, labels, plan, self.options.min_box_size)
        for name, value in extras.items():
            if name not in TARGET_KEYS:
                self._fields.setdefault(name, [None] * self.count)[k] = value

    def _mask(self, k: int, mask: Any, plan: SamplePlan, size: tuple[int, int],
              where: str) -> None:
        """Sample ``k``'s mask into the batch: a random crop's box by one C pass (nearest,
        flip, straight into the batch's uint8 or int64 buffer), anything else by numpy."""
        crop = self.pipeline.geometry.random_crop is not None
        # a random crop needs the mask's rows down to its box's bottom only
        decoded = decode_mask(mask, size, where, int(plan.box[0] + plan.box[2]) if crop else None)
        out = self._mask_slot(k).numpy()
        if crop and _mask_crop_nearest is not None and not any(
                name in AFFINE_KERNELS for steps in plan.steps for name, _ in steps):
            top, left, h, w = (int(v) for v in plan.box)
            rows = np.ascontiguousarray(decoded)
            _mask_crop_nearest(rows, rows.shape[0], rows.shape[1], top, left, h, w, out,
                               out.shape[0], out.shape[1], plan.flip, out.itemsize)
        else:
            out[:] = transform_mask(decoded, plan, size, self.pipeline, self.options.ignore_index)

    def _label(self, k: int, label: Any, where: str) -> None:
        if not self.options.multi_label:
            if isinstance(label, (list, tuple, np.ndarray)):
                raise SourceError(f"{where}: label {list(label)!r:.60} is a list, but the source "
                                  "is not multi-label; give it multi_label=True and num_classes=")
            self.labels[k] = label
            return
        classes = self.options.num_classes
        values = np.atleast_1d(np.asarray(label, dtype=np.int64)) if not (
            isinstance(label, (int, np.integer)) and label == -1) else np.empty(0, np.int64)
        if values.size and (values.min() < 0 or values.max() >= classes):
            raise SourceError(f"{where}: label {values.tolist()!r:.60} holds a class outside "
                              f"0..{classes - 1} (num_classes={classes})")
        self.labels[k] = 0.0
        self.labels[k, values] = 1.0

    def _mask_slot(self, k: int) -> torch.Tensor:
        if self._masks is None:
            self._masks = self._alloc((self.count, *self.out_size))  # uint8, or int64 pooled
        return self._masks[k]

    def finish(self, where: Callable[[], str]) -> Optional[HostTargets]:
        """The batch's targets (None when it has none); ``where()`` names the batch in errors."""
        masks = None
        if self._has_masks.any():
            if not self._has_masks.all():
                raise SourceError(f"{where()}: some samples have a mask and others none; give "
                                  "every sample of a segmentation source a mask")
            masks = self._masks
        boxes = box_labels = counts = None
        if any(b is not None for b in self._boxes):
            found = [b if b is not None else (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
                     for b in self._boxes]
            counts = np.array([len(b[1]) for b in found], np.int64)
            most = max(1, int(counts.max()))
            boxes = np.zeros((self.count, most, 4), np.float32)
            box_labels = np.full((self.count, most), -1, np.int64)
            for k, (b, lab) in enumerate(found):
                boxes[k, :len(lab)], box_labels[k, :len(lab)] = b, lab
        fields = {name: collate_field(name, values, where)
                  for name, values in self._fields.items()} or None
        if masks is None and boxes is None and fields is None:
            return None
        if masks is not None and self.pooled:
            return HostTargets(None, boxes, box_labels, counts, fields, pooled=True)
        return HostTargets(masks, boxes, box_labels, counts, fields)


def collate_field(name: str, values: list, where: Callable[[], str]) -> Any:
    """One per-sample field of a batch: numbers and arrays stacked, strings a list."""
    if any(v is None for v in values):
        raise SourceError(f"{where()}: field {name!r} is missing from some samples; give every "
                          "sample the same fields")
    if all(isinstance(v, str) for v in values):
        return list(values)
    try:
        arrays = [np.asarray(v) for v in values]
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot take, named
        raise SourceError(f"{where()}: field {name!r}: {exc}") from None
    if any(a.dtype == object for a in arrays) or len({a.shape for a in arrays}) > 1:
        shapes = sorted({str(a.shape) for a in arrays})
        raise SourceError(f"{where()}: field {name!r} has values of shapes {', '.join(shapes)} "
                          "(or of no numeric type); a field is a number, a string or an array "
                          "of one shape")
    return np.stack(arrays)


# --- masks -----------------------------------------------------------------------------------

def nearest_indices(size: int, out: int) -> np.ndarray:
    """The source index of each output index along one axis, as torch's ``nearest`` computes
    it: ``min(floor(i * (float32) size / out), size - 1)`` in float32 arithmetic."""
    if size == out:
        return np.arange(out)
    scale = np.float32(np.float32(size) / np.float32(out))
    found = np.floor(np.arange(out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(found, size - 1)


def _nearest(mask: np.ndarray, out: tuple[int, int]) -> np.ndarray:
    """``F.interpolate(mask, out, mode="nearest")``'s pixels, by index arrays (no torch
    threads, ~20x faster on a worker's single core)."""
    if mask.shape == tuple(out):
        return mask
    rows = nearest_indices(mask.shape[0], out[0])
    cols = nearest_indices(mask.shape[1], out[1])
    return mask.take(rows, axis=0).take(cols, axis=1)


def _window(image: np.ndarray, top: int, left: int, height: int, width: int,
            fill: int) -> np.ndarray:
    """``image[top:top + height, left:left + width]``, ``fill`` where that leaves the image."""
    out = np.full((height, width), fill, np.uint8)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, image.shape[0]), min(left + width, image.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out


def transform_mask(mask: np.ndarray, plan: SamplePlan, size: tuple[int, int],
                   pipeline: Pipeline, fill: int) -> np.ndarray:
    """The mask through the image's geometry: torchvision v2's arithmetic for a Mask (crop then
    resize nearest for RandomResizedCrop; resize nearest then centre crop, padded with
    ``fill``, for Resize + CenterCrop), then the flip and the affine steps."""
    geometry = pipeline.geometry
    out_h, out_w = plan.out_size
    if geometry.random_crop is not None:
        top, left, h, w = (int(v) for v in plan.box)
        result = _nearest(_window(mask, top, left, h, w, fill), (out_h, out_w))
    elif geometry.crop is None:
        result = _nearest(mask, (out_h, out_w))
    else:
        new_h, new_w = geometry.resized(*size)
        top, left, _, _ = draws.center_box(new_h, new_w, (out_h, out_w))
        result = _window(_nearest(mask, (new_h, new_w)), int(top), int(left), out_h, out_w, fill)
    if plan.flip:
        result = result[:, ::-1]
    for op_steps in plan.steps:
        for name, value in op_steps:
            if name in AFFINE_KERNELS:
                result = warp_mask(result, affine_matrix(name, value, out_h, out_w), fill)
    return np.ascontiguousarray(result)


def warp_mask(mask: np.ndarray, matrix: Any, fill: int) -> np.ndarray:
    """Nearest sampling through the image's index-space matrix (``pixel.warp_nearest``'s
    arithmetic: rounded half to even), ``fill`` outside."""
    padded = np.append(mask.reshape(-1), np.uint8(fill))  # the last pixel: the fill
    return padded[nearest_sources(matrix, *mask.shape)]


# --- boxes -----------------------------------------------------------------------------------

def transform_boxes(boxes: np.ndarray, labels: np.ndarray, plan: SamplePlan,
                    min_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes through the plan: mapped from the source box to the output (one affine map for
    every geometry: ``(x - box_left) * out_w / box_w``), flipped, through the affine steps,
    clipped, and those under ``min_size`` dropped."""
    top, left, h, w = plan.box
    out_h, out_w = plan.out_size
    sx, sy = out_w / w, out_h / h
    x0 = (boxes[:, 0] - left) * sx
    x1 = (boxes[:, 2] - left) * sx
    y0 = (boxes[:, 1] - top) * sy
    y1 = (boxes[:, 3] - top) * sy
    if plan.flip:
        x0, x1 = out_w - x1, out_w - x0
    for op_steps in plan.steps:
        for name, value in op_steps:
            if name in AFFINE_KERNELS:
                x0, y0, x1, y1 = _affine_boxes(affine_matrix(name, value, out_h, out_w),
                                               x0, y0, x1, y1)
    out = np.stack([np.clip(x0, 0, out_w), np.clip(y0, 0, out_h),
                    np.clip(x1, 0, out_w), np.clip(y1, 0, out_h)], 1)
    keep = ((out[:, 2] - out[:, 0]) >= min_size) & ((out[:, 3] - out[:, 1]) >= min_size)
    return out[keep].astype(np.float32), labels[keep]


def _affine_boxes(matrix: Any, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray,
                  y1: np.ndarray) -> tuple[np.ndarray, ...]:
    """The enclosing boxes of the corners mapped forward. ``matrix`` maps an output pixel index
    to the source index it samples; a box edge u is index u - 0.5."""
    m0, m1, c0, m3, m4, c1 = matrix
    inverse = np.linalg.inv(np.array([[m0, m1], [m3, m4]], np.float64))
    xs = np.stack([x0, x1, x1, x0], 1) - 0.5 - c0
    ys = np.stack([y0, y0, y1, y1], 1) - 0.5 - c1
    ox = inverse[0, 0] * xs + inverse[0, 1] * ys + 0.5
    oy = inverse[1, 0] * xs + inverse[1, 1] * ys + 0.5
    return ox.min(1), oy.min(1), ox.max(1), oy.max(1)
