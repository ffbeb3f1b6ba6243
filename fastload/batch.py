"""The batch contract both backends keep."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, NamedTuple, Optional, Sequence


def describe_samples(source: Any, indices: Any, shown: int = 4) -> str:
    """``samples [3, 8, ...] (a.jpg (sample 3), ... and 5 more)``: which samples a batch holds,
    for error messages."""
    indices = [int(i) for i in indices]
    files = ", ".join(source.locate(i) for i in indices[:shown])
    more = f" and {len(indices) - shown} more" if len(indices) > shown else ""
    listed = f"{indices[:16]}{' ...' if len(indices) > 16 else ''}"
    return f"samples {listed} ({files}{more})"


class BatchTask(NamedTuple):
    """One batch of work for a backend: which samples, at which global positions of the epoch."""

    seed: int
    epoch: int
    indices: Any    # numpy int64 sample indices
    positions: Any  # numpy int64 global positions (key the random draws)
    padded: Any     # numpy bool
    slot: int = -1  # torch backend: the batch buffer of the producer's pool to render into
    ahead: Any = None  # the sample indices this process will most likely read next (or None)


class EpochTasks(Sequence[BatchTask]):
    """One rank's BatchTasks for (part of) an epoch, made on demand: an ImageNet epoch is 20k
    batches, and a training loop's ``next()`` must not pay for them all at an epoch start.

    ``shard()`` gives the epoch's ``sharding.Shard`` (computed on first use, once).
    """

    def __init__(self, seed: int, epoch: int, count: int, shard: Callable[[], Any]) -> None:
        self.seed, self.epoch, self._count = seed, epoch, count
        self._make_shard: Optional[Callable[[], Any]] = shard
        self._shard: Any = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._count))]
        if k < 0:
            k += self._count
        if not 0 <= k < self._count:
            raise IndexError(f"task {k} of {self._count}")
        if self._make_shard is not None:
            self._shard, self._make_shard = self._make_shard(), None
        shard = self._shard
        part = shard.batch(k)
        return BatchTask(self.seed, self.epoch, shard.indices[part], shard.positions[part],
                         shard.padded[part])


class TaskRun:
    """Task sequences queued back to back, taken from the front; O(1) per task however long
    the sequences (an ``EpochTasks`` is not expanded)."""

    def __init__(self, *parts: Sequence[BatchTask]) -> None:
        self._parts: deque[list[Any]] = deque()  # [sequence, index of its next task]
        self._count = 0
        for part in parts:
            self.extend(part)

    def extend(self, tasks: Sequence[BatchTask]) -> None:
        if len(tasks):
            self._parts.append([tasks, 0])
            self._count += len(tasks)

    def popleft(self) -> BatchTask:
        if not self._count:
            raise IndexError("no task queued")
        part = self._parts[0]
        task = part[0][part[1]]
        part[1] += 1
        if part[1] == len(part[0]):
            self._parts.popleft()
        self._count -= 1
        return task

    def __getitem__(self, k: int) -> BatchTask:
        """The k-th queued task (0 = the next one)."""
        if not 0 <= k < self._count:
            raise IndexError(f"task {k} of {self._count} queued")
        for tasks, first in self._parts:
            if k < len(tasks) - first:
                return tasks[first + k]
            k -= len(tasks) - first
        raise AssertionError("unreachable")

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._parts.clear()
        self._count = 0


class HostBatch(NamedTuple):
    """What a backend's CPU stage hands to the device tail, on the host.

    ``images`` is a torch tensor (in a torch worker: in shared memory); the per-sample fields
    are small numpy arrays, which a worker's pickle carries inline (a torch tensor would need a
    shared-memory segment and a file-descriptor handshake each).
    """

    images: Any     # uint8 (B, 3, H, W), or already normalized (see tail.Tail)
    labels: Any     # int64 (B,)
    indices: Any    # int64 (B,) sample index in the source
    positions: Any  # int64 (B,) global position in the epoch order
    padded: Any     # bool (B,) True for samples repeated to even out the ranks
    erase: Any      # int32 (B, 4) top, left, height, width of the erasing box (0 = none)
    seed: int       # the loader's seed and the batch's epoch (they key the erasing noise)
    epoch: int
    skipped: tuple = ()  # (location, reason) of samples replaced under on_error="skip"
    slot: int = -1  # images were written into this buffer of the producer's pool (images None)
    targets: Any = None  # backends.targets.HostTargets: masks, boxes, fields (None: none)


class Batch(tuple):
    """``images, labels = batch`` unpacks like a DataLoader batch; also ``.indices``, ``.padded``.

    ``padded[i]`` is True when sample ``i`` repeats one seen elsewhere this epoch to give every
    rank the same number of batches: skip those when counting evaluation results.
    ``source[i]``: for a ``fl.Mix`` source, the component sample ``i`` came from (else None).
    Targets beyond a class index (None when the source has none): ``masks`` int64 (B, H, W);
    ``boxes`` float32 (B, N, 4) xyxy in output pixels, padded to the batch's largest count,
    with ``box_labels`` int64 (B, N) (-1 in padding) and ``box_counts`` int64 (B,);
    ``fields``, the source's other per-sample fields by name (tensors; strings as lists), each
    also an attribute (``batch.weight``).
    """

    indices: Any
    padded: Any
    skipped: tuple
    source: Any = None
    masks: Any = None
    boxes: Any = None
    box_labels: Any = None
    box_counts: Any = None

    def __new__(cls, images: Any, labels: Any, indices: Any, padded: Any,
                skipped: tuple = (), targets: Optional[dict] = None) -> "Batch":
        self = super().__new__(cls, (images, labels))
        self.indices = indices
        self.padded = padded
        self.skipped = skipped
        self.fields = {}
        for name, value in (targets or {}).items():
            setattr(self, name, value)
        return self

    def targets(self) -> dict:
        """The targets besides images and labels, by name (those the batch has)."""
        out = {name: getattr(self, name) for name in ("masks", "boxes", "box_labels", "box_counts")
               if getattr(self, name) is not None}
        if self.fields:
            out["fields"] = self.fields
        return out

    def __getattr__(self, name: str) -> Any:  # a per-sample field by name
        fields = self.__dict__.get("fields") or {}
        if name in fields:
            return fields[name]
        raise AttributeError(f"Batch has no attribute or field {name!r}"
                             + (f" (fields: {', '.join(fields)})" if fields else ""))

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self[0], self[1], self.indices, self.padded, self.skipped, self.targets())

    @property
    def images(self) -> Any:
        return self[0]

    @property
    def labels(self) -> Any:
        return self[1]

    def to(self, device: Any, non_blocking: bool = False) -> "Batch":
        """The batch with its images, labels, masks, boxes and tensor fields on ``device``
        (``tensor.to``'s arguments); indices, padded and source stay as they are."""
        def move(value: Any) -> Any:
            if hasattr(value, "to"):
                return value.to(device, non_blocking=non_blocking)
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            return value

        moved = Batch(move(self[0]), move(self[1]), self.indices, self.padded, self.skipped,
                      {k: move(v) for k, v in self.targets().items()})
        moved.source = self.source
        return moved

    def __repr__(self) -> str:
        extra = "".join(f", {k}={tuple(v.shape)}" for k, v in self.targets().items()
                        if hasattr(v, "shape"))
        if self.fields:
            extra += f", fields={sorted(self.fields)}"
        return (f"Batch(images={tuple(self[0].shape)} {self[0].dtype}, labels={tuple(self[1].shape)}"
                f"{extra}, padded={int(self.padded.sum())})")
