"""The batch contract both backends keep."""

from __future__ import annotations

from typing import Any, NamedTuple


class BatchTask(NamedTuple):
    """One batch of work for a backend: which samples, at which global positions of the epoch."""

    seed: int
    epoch: int
    indices: Any    # numpy int64 sample indices
    positions: Any  # numpy int64 global positions (key the random draws)
    padded: Any     # numpy bool
    slot: int = -1  # torch backend: the batch buffer of the producer's pool to render into


class HostBatch(NamedTuple):
    """What a backend's CPU stage hands to the device tail, on the host.

    ``images`` is a torch tensor (in a torch worker: in shared memory); the per-sample fields
    are small numpy arrays, which a worker's pickle carries inline (a torch tensor would need a
    shared-memory segment and a file-descriptor handshake each).
    """

    images: Any     # uint8 (B, 3, H, W), or already normalized (see DeviceTail.normalized_input)
    labels: Any     # int64 (B,)
    indices: Any    # int64 (B,) sample index in the source
    positions: Any  # int64 (B,) global position in the epoch order
    padded: Any     # bool (B,) True for samples repeated to even out the ranks
    erase: Any      # int32 (B, 4) top, left, height, width of the erasing box (0 = none)
    seed: int       # the loader's seed and the batch's epoch (they key the erasing noise)
    epoch: int
    skipped: tuple = ()  # (location, reason) of samples replaced under on_error="skip"
    slot: int = -1  # images were written into this buffer of the producer's pool (images None)


class Batch(tuple):
    """``images, labels = batch`` unpacks like a DataLoader batch; also ``.indices``, ``.padded``.

    ``padded[i]`` is True when sample ``i`` repeats one seen elsewhere this epoch to give every
    rank the same number of batches: skip those when counting evaluation results.
    """

    indices: Any
    padded: Any
    skipped: tuple

    def __new__(cls, images: Any, labels: Any, indices: Any, padded: Any,
                skipped: tuple = ()) -> "Batch":
        self = super().__new__(cls, (images, labels))
        self.indices = indices
        self.padded = padded
        self.skipped = skipped
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self[0], self[1], self.indices, self.padded, self.skipped)

    @property
    def images(self) -> Any:
        return self[0]

    @property
    def labels(self) -> Any:
        return self[1]

    def __repr__(self) -> str:
        return (f"Batch(images={tuple(self[0].shape)} {self[0].dtype}, labels={tuple(self[1].shape)}, "
                f"padded={int(self.padded.sum())})")
