"""The pipeline spec: an ordered, validated, immutable tuple of ops.

Order (checked once, before any image is read)::

    Decode, geometry, [RandomFlip], [per-sample ops ...], [Normalize], [RandomErasing],
    [Mixup | CutMix | MixupOrCutMix], [BatchLambda ...]

where geometry is one of ``RandomResizedCrop``, ``Resize`` (with a (height, width) size),
``Resize(shorter_side) + CenterCrop`` or ``CenterCrop``: every pipeline has a fixed output size,
so batches stack. ``RandomErasing`` and the mixing ops work in normalized units and so need
``Normalize`` before them. Per-sample ops (ColorJitter, RandomGrayscale, RandomSolarize,
GaussianBlur, ThreeAugment, TrivialAugmentWide, RandAugment, Lambda) act on the uint8 crop, in
the order given; batch ops on the finished batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any, Iterator, Optional, Union

from ..errors import SpecError
from .autoaugment import RandAugment, TrivialAugmentWide
from .basic import (CenterCrop, Decode, Normalize, Op, RandomErasing, RandomFlip,
                    RandomResizedCrop, Resize)
from .mixing import CutMix, Mixup, MixupOrCutMix
from .photometric import (ColorJitter, GaussianBlur, RandomGrayscale, RandomSolarize,
                          ThreeAugment)
from .schedule import ByEpoch
from .user_ops import BatchLambda, Lambda

SPEC_VERSION = 1
_ORDER = "Decode, geometry (RandomResizedCrop | Resize [CenterCrop] | CenterCrop), " \
         "[RandomFlip], [per-sample ops: ColorJitter | RandomGrayscale | RandomSolarize | " \
         "GaussianBlur | ThreeAugment | TrivialAugmentWide | RandAugment | Lambda, any " \
         "number], [Normalize], [RandomErasing], " \
         "[Mixup | CutMix | MixupOrCutMix], [BatchLambda ...]"
#: The ops a pipeline dict/JSON may name (Lambda and BatchLambda hold functions: code only).
OPS: dict[str, type[Op]] = {cls.__name__: cls for cls in (
    Decode, RandomResizedCrop, Resize, CenterCrop, RandomFlip, Normalize, RandomErasing,
    ColorJitter, RandomGrayscale, RandomSolarize, GaussianBlur, ThreeAugment,
    TrivialAugmentWide, RandAugment, Mixup, CutMix, MixupOrCutMix)}
#: Per-sample ops on the uint8 crop, run in pipeline order after the flip.
PIXEL_OPS: tuple[type, ...] = (ColorJitter, RandomGrayscale, RandomSolarize, GaussianBlur,
                               ThreeAugment, TrivialAugmentWide, RandAugment, Lambda)
MIXING_OPS: tuple[type, ...] = (Mixup, CutMix, MixupOrCutMix)


class Pipeline:
    """An immutable, validated sequence of ops; ``Pipeline(Decode(), RandomResizedCrop(224))``."""

    __slots__ = ("ops", "geometry_ops", "flip", "pixel", "normalize", "erasing", "mixing",
                 "batch_fns", "schedule", "_geometry", "_epochs")

    def __init__(self, *ops: Op) -> None:
        if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
            ops = tuple(ops[0])
        for i, op in enumerate(ops):
            if not isinstance(op, Op):
                raise SpecError(f"Pipeline: item {i} is {op!r}, not a fastload op{_hint(op)}")
        object.__setattr__(self, "ops", tuple(ops))
        self._validate()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Pipeline is immutable; build a new one")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _validate(self) -> None:
        ops = list(self.ops)
        if not ops or not isinstance(ops[0], Decode):
            first = type(ops[0]).__name__ if ops else "nothing"
            raise SpecError(f"Pipeline: must start with Decode(), found {first}; order is {_ORDER}")
        rest = ops[1:]
        geometry: list[Op] = []
        while rest and isinstance(rest[0], (RandomResizedCrop, Resize, CenterCrop)):
            geometry.append(rest.pop(0))
        if not geometry:
            late = next((k for k, op in enumerate(rest)
                         if isinstance(op, (RandomResizedCrop, Resize, CenterCrop))), None)
            if late is not None:
                raise SpecError(f"Pipeline: {type(rest[late]).__name__} (item {late + 1}) is out "
                                f"of place: geometry ops come right after Decode; order is "
                                f"{_ORDER}")
        self._set("geometry_ops", tuple(geometry))
        sizes = getattr(geometry[0], "size", None) if geometry else None
        self._set("schedule", sizes if isinstance(sizes, ByEpoch) else None)
        self._set("_epochs", {})
        first_size = [replace(geometry[0], size=self.schedule.at(0)), *geometry[1:]] \
            if self.schedule else geometry
        value = _geometry(first_size)  # checks the geometry (at epoch 0's size)
        self._set("_geometry", None if self.schedule else value)
        self._set("flip", _take(rest, RandomFlip))
        self._set("pixel", _take_all(rest, PIXEL_OPS))
        self._set("normalize", _take(rest, Normalize))
        self._set("erasing", _take(rest, RandomErasing))
        self._set("mixing", _take(rest, MIXING_OPS))
        self._set("batch_fns", _take_all(rest, (BatchLambda,)))
        if rest:
            name = type(rest[0]).__name__
            raise SpecError(f"Pipeline: {name} is out of place (or repeated); order is {_ORDER}")
        for op, what in ((self.erasing, "erases"), (self.mixing, "mixes")):
            if op is not None and self.normalize is None:
                raise SpecError(f"{type(op).__name__}: needs Normalize before it (it {what} in "
                                "normalized units)")

    def without_batch_functions(self) -> "Pipeline":
        """This pipeline less its BatchLambdas: what worker processes need (they never run
        batch functions, which need not be picklable)."""
        if not self.batch_fns:
            return self
        return Pipeline(*(op for op in self.ops if not isinstance(op, BatchLambda)))

    # --- sizes that follow the epoch ---------------------------------------------------------
    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of every output image; a pipeline whose size follows the epoch has
        one per epoch: ``at_epoch(e).output_size``."""
        return self.geometry.output_size

    @property
    def geometry(self) -> Geometry:
        """The geometry ops as one value (``Geometry``); a pipeline whose size follows the epoch
        has one per epoch: ``at_epoch(e).geometry``."""
        if self._geometry is None:
            raise SpecError("Pipeline: the output size follows the epoch (by_epoch); use "
                            "pipeline.at_epoch(epoch).output_size")
        return self._geometry

    def at_epoch(self, epoch: int) -> "Pipeline":
        """The fixed-size pipeline of ``epoch`` (this one when no size follows the epoch)."""
        if self.schedule is None:
            return self
        size = self.schedule.at(epoch)
        if size not in self._epochs:
            first = replace(self.geometry_ops[0], size=size)
            self._epochs[size] = Pipeline(*(first if op is self.geometry_ops[0] else op
                                            for op in self.ops))
        return self._epochs[size]

    def largest_output_size(self) -> tuple[int, int]:
        """The largest (height, width) over every epoch (buffers sized once hold them all)."""
        if self.schedule is None:
            return self.output_size
        sizes = self.schedule.values()
        return (max(h for h, _ in sizes), max(w for _, w in sizes))

    # --- description -------------------------------------------------------------------------
    @property
    def output_dtype(self) -> str:
        return self.normalize.dtype if self.normalize is not None else "uint8"

    def describe(self, epoch: int = 0) -> dict[str, Any]:
        """Per-sample output at ``epoch``: channels-first shape and dtype, and the labels' shape
        and dtype (soft targets after a mixing op), known before any image is read."""
        h, w = self.at_epoch(epoch).output_size
        labels: dict[str, Any] = {"shape": (), "dtype": "int64"}
        if self.mixing is not None:
            labels = {"shape": (self.mixing.num_classes,), "dtype": "float32"}
        return {"shape": (3, h, w), "dtype": self.output_dtype, "labels": labels}

    # --- dict / JSON round trip ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"version": SPEC_VERSION, "ops": [op.to_dict() for op in self.ops]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Pipeline":
        if not isinstance(data, dict) or not isinstance(data.get("ops"), list):
            raise SpecError("pipeline dict must look like {'version': 1, 'ops': [...]}")
        version = data.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError(f"pipeline version {version!r} is not supported (expected {SPEC_VERSION})")
        return cls(*(op_from_dict(op) for op in data["ops"]))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "Pipeline":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"pipeline JSON is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    # --- value semantics ---------------------------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        return (Pipeline, self.ops)

    def __copy__(self) -> "Pipeline":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "Pipeline":
        return self

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.ops == other.ops

    def __hash__(self) -> int:
        return hash(self.ops)

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {op!r}" for op in self.ops)
        return f"Pipeline(\n{inner},\n)"


#: torchvision transforms and the fastload op doing the same (also used by ``from_torchvision``)
EQUIVALENT = {"RandomHorizontalFlip": "fl.RandomFlip", "RandomResizedCrop": "fl.RandomResizedCrop",
              "Resize": "fl.Resize", "CenterCrop": "fl.CenterCrop", "ColorJitter": "fl.ColorJitter",
              "Normalize": "fl.Normalize", "RandomErasing": "fl.RandomErasing",
              "RandomGrayscale": "fl.RandomGrayscale", "GaussianBlur": "fl.GaussianBlur",
              "RandomSolarize": "fl.RandomSolarize", "RandAugment": "fl.RandAugment",
              "TrivialAugmentWide": "fl.TrivialAugmentWide"}


def _hint(obj: Any) -> str:
    """For a torchvision / timm transform given as an op: its fastload equivalent."""
    module = type(obj).__module__
    if not module.startswith(("torchvision", "timm")):
        return ""
    name = type(obj).__name__
    same = EQUIVALENT.get(name)
    return (f" but a {module.split('.')[0]} transform" + (f": use {same}" if same else "") +
            "; or convert the whole transform with fl.from_torchvision(...) (timm's: "
            "fl.from_timm(**create_transform_kwargs))")


def _take(rest: list[Op], kind: Any) -> Optional[Any]:
    if rest and isinstance(rest[0], kind):
        return rest.pop(0)
    return None


def _take_all(rest: list[Op], kinds: tuple[type, ...]) -> tuple[Op, ...]:
    taken = []
    while rest and isinstance(rest[0], kinds):
        taken.append(rest.pop(0))
    return tuple(taken)


def op_from_dict(data: dict[str, Any]) -> Op:
    """Rebuild one op from its ``to_dict()`` form; unknown ops and fields are errors."""
    if not isinstance(data, dict) or "op" not in data:
        raise SpecError(f"op entry {data!r} must be a dict with an 'op' key")
    kind = data["op"]
    cls = OPS.get(kind)
    if cls is None:
        code_only = " (it holds a Python function: build it in code)" \
            if kind in ("Lambda", "BatchLambda") else ""
        raise SpecError(f"unknown op {kind!r}{code_only}; known ops: {', '.join(OPS)}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    extra = set(data) - known - {"op"}
    if extra:
        raise SpecError(f"{kind}: unknown field(s) {sorted(extra)}; known: {sorted(known)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "op"}
    return cls(**kwargs)


@dataclass(frozen=True)
class Geometry:
    """What a pipeline's geometry ops do, as one value every backend reads: a random resized
    crop (``random_crop``: (scale, ratio) ranges), or a deterministic ``resize`` (Resize's size:
    the shorter side, or (height, width)) and/or centre ``crop`` ((height, width)); each image
    comes out ``output_size`` (height, width)."""

    output_size: tuple[int, int]
    random_crop: Optional[tuple[tuple[float, float], tuple[float, float]]] = None
    resize: Union[None, int, tuple[int, int]] = None
    crop: Optional[tuple[int, int]] = None
    resize_max: Optional[int] = None  # Resize's max_size: the longer side's bound

    @property
    def resizes(self) -> bool:
        return self.resize is not None or self.resize_max is not None

    @property
    def random(self) -> bool:
        return self.random_crop is not None

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) an image has after ``resize`` (torchvision's Resize: an int sets
        the shorter side, the longer scales and is floored; ``resize_max`` bounds the longer
        side, the shorter then scaled from the resized one and floored, at least 1)."""
        size, bound = self.resize, self.resize_max
        if size is None and bound is None:
            return height, width
        if isinstance(size, tuple):
            return size
        short, long = (width, height) if width <= height else (height, width)
        if size is None:
            new_short, new_long = int(bound * short / long), bound  # type: ignore[operator]
        else:
            new_short, new_long = size, int(size * long / short)
            if bound is not None and new_long > bound:
                new_short, new_long = int(bound * new_short / new_long), bound
        new_short = max(1, new_short)  # a sliver of an image keeps a row (torchvision fails)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def may_exceed_image(self) -> bool:
        """Can the crop reach outside the (resized) image? Then it is padded with zeros."""
        if self.crop is None:
            return False
        if not self.resizes:
            return True
        if isinstance(self.resize, tuple):
            return self.crop[0] > self.resize[0] or self.crop[1] > self.resize[1]
        if self.resize_max is not None:  # the shorter side can shrink to any length
            return True
        return max(self.crop) > self.resize  # type: ignore[operator]


def _geometry(ops: list[Op]) -> Geometry:
    """The Geometry of a geometry section, or a SpecError saying why it has no fixed size."""
    kinds = [type(op) for op in ops]
    if kinds == [RandomResizedCrop]:
        rrc = ops[0]
        return Geometry(rrc.size, random_crop=(rrc.scale, rrc.ratio))  # type: ignore[attr-defined]
    if kinds == [CenterCrop]:
        return Geometry(ops[0].size, crop=ops[0].size)  # type: ignore[attr-defined]
    if kinds == [Resize, CenterCrop]:
        return Geometry(ops[1].size, resize=ops[0].size, crop=ops[1].size,  # type: ignore[attr-defined]
                        resize_max=ops[0].max_size)  # type: ignore[attr-defined]
    if kinds == [Resize]:
        size = ops[0].size  # type: ignore[attr-defined]
        if isinstance(size, tuple):
            return Geometry(size, resize=size)
        raise SpecError(f"Resize: size={size!r} sets only the shorter side (max_size only bounds "
                        "the longer one), so batches would not stack; add CenterCrop(...) after "
                        "it or give Resize((height, width))")
    if not kinds:
        raise SpecError(f"Pipeline: needs a geometry op after Decode for a fixed output size; "
                        f"order is {_ORDER}")
    names = " + ".join(k.__name__ for k in kinds)
    raise SpecError(f"Pipeline: geometry {names} is not supported; use one of "
                    "RandomResizedCrop | Resize [CenterCrop] | CenterCrop")
