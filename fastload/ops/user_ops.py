"""The escape hatch: a user's own per-sample function (``Lambda``) and batch function
(``BatchLambda``). Neither can be written to JSON (they hold Python functions)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import SpecError
from .basic import Op


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


@dataclass(frozen=True)
class Lambda(Op):
    """``fn(image, rng) -> image`` on each sample's uint8 (H, W, 3) numpy array, after the
    geometry and the flip, before Normalize; it must return the same shape and dtype.

    ``rng`` is a ``numpy.random.Generator`` drawn from (seed, epoch, sample position) and the
    op's place in the pipeline, so results are reproducible and independent of the workers.
    Runs in the torch backend's worker processes, so ``fn`` must be picklable (a module-level
    function or an instance of a module-level class; not a lambda or a closure).
    """

    fn: Callable[[Any, Any], Any]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise SpecError(f"Lambda: fn={self.fn!r} must be callable as fn(image, rng)")
        try:
            pickle.dumps(self.fn)
        except Exception as exc:  # noqa: BLE001 - whatever pickle raises, the message is ours
            raise SpecError(f"Lambda: fn={_name(self.fn)} cannot be pickled ({exc}); it runs in "
                            "worker processes: define it at module level") from None

    @property
    def name(self) -> str:
        return f"Lambda({_name(self.fn)})"

    def to_dict(self) -> dict[str, Any]:
        raise SpecError(f"{self.name} holds a Python function and cannot be written to a dict "
                        "or JSON; build this pipeline in code")


@dataclass(frozen=True)
class BatchLambda(Op):
    """``fn(images, labels) -> (images, labels)`` on each finished batch, on the target device,
    in the training process (after Normalize, RandomErasing and any Mixup/CutMix). Any
    backend; ``fn`` need not be picklable (worker processes never receive it)."""

    fn: Callable[[Any, Any], Any]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise SpecError(f"BatchLambda: fn={self.fn!r} must be callable as fn(images, labels)")

    @property
    def name(self) -> str:
        return f"BatchLambda({_name(self.fn)})"

    def to_dict(self) -> dict[str, Any]:
        raise SpecError(f"{self.name} holds a Python function and cannot be written to a dict "
                        "or JSON; build this pipeline in code")
