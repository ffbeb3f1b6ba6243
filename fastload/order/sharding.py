"""Sharding: which sample indices each rank reads, batch by batch. A pure function.

For epoch ``e`` the global order is ``order = permutation(N, seed, e)`` (the identity when
``shuffle=False``). Global position ``j`` goes to rank ``j % W``; each rank cuts its positions
into batches of ``B``. Position ``j`` reads sample ``order[j % N]``; positions ``j >= N`` are
padding (they wrap to the start of ``order``) and are marked so evaluation can count each
sample once.

=========  =============================  ===========================================
policy     samples per rank per epoch     padding
=========  =============================  ===========================================
pad        ``ceil(N / (W*B)) * B``        positions past N wrap; marked ``padded``
drop       ``floor(N / (W*B)) * B``       none; the tail is skipped (another each epoch)
partial    ``ceil(N / W)``                wraps to make N divisible by W; last batch
                                          smaller, the same size on every rank
=========  =============================  ===========================================

Every rank gets the same number of batches, so no rank waits forever in an all-reduce.

Shard-aware order (``window=w`` with each sample's shard number in ``groups``): the epoch's
shards are permuted, taken ``w`` at a time, and the samples of each group of ``w`` shards are
shuffled among themselves; the groups follow one another. It is still a permutation that is a
function of (seed, epoch) alone, dealt to ranks exactly as above, so resume, elastic restarts
and equal batch counts hold unchanged; at any time every rank reads from the same ``w`` shards
(request locality, a small working set for a shard cache), at the price of randomness: a
sample can only land in its group's span of the epoch (``w / S`` of it), not anywhere.

Worked example, N=10, W=2, B=4, ``pad``: 16 positions, the last 6 wrap to order[0..5] (``*``)::

    rank 0:  batch 0 = order[0, 2, 4, 6]    batch 1 = order[8, 0*, 2*, 4*]
    rank 1:  batch 0 = order[1, 3, 5, 7]    batch 1 = order[9, 1*, 3*, 5*]

The same with ``drop``: one batch each (order[0, 2, 4, 6] and order[1, 3, 5, 7]); with
``partial``: rank 0 gets order[0, 2, 4, 6] then order[8], rank 1 order[1, 3, 5, 7] then order[9].

Resume: ``start`` is the number of global positions already consumed (``batches * W * B`` when
every rank yielded the same batches). The remaining positions ``start, start+1, ...`` are dealt
round-robin to the ranks of the *current* world, which may differ from the one that stopped:
with ``m = N - start`` samples left, the table above applies with ``m`` in place of ``N``. So
N=10, W=2, B=4, pad, stopped after one batch (start=8) and resumed on W=1: rank 0 gets
order[8, 9, 0*, 1*]. Each remaining sample is seen exactly once, unmarked, across the new ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import SpecError

POLICIES = ("pad", "drop", "partial")


@dataclass(frozen=True)
class Shard:
    """One rank's work for one epoch: parallel arrays, cut into batches by ``batch_size``."""

    indices: np.ndarray    # int64 sample index read at each of this rank's positions
    positions: np.ndarray  # int64 global position in the epoch order (keys augmentation draws)
    padded: np.ndarray     # bool, True where the position wraps past N
    batch_size: int

    def __len__(self) -> int:
        """Number of batches."""
        return -(-len(self.indices) // self.batch_size)

    def batch(self, k: int) -> slice:
        """The slice of the parallel arrays that makes batch ``k``."""
        return slice(k * self.batch_size, (k + 1) * self.batch_size)


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's global order: a function of (seed, epoch) alone, the same on every rank."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, 0x5EED])))
    return rng.permutation(n).astype(np.int64)


def shard_window_order(groups: np.ndarray, seed: int, epoch: int, window: int) -> np.ndarray:
    """The shard-aware epoch order: ``groups[i]`` is sample ``i``'s shard (0..S-1); shards are
    permuted and taken ``window`` at a time, samples shuffled within each such group."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, 0x5EED, 0x5A4D])))
    groups = np.asarray(groups, dtype=np.int64)
    shards = int(groups.max()) + 1 if len(groups) else 0
    place = np.empty(shards, dtype=np.int64)
    place[rng.permutation(shards)] = np.arange(shards)  # each shard's place in the epoch
    key = (place[groups] // window).astype(np.float64) + rng.random(len(groups))
    return np.argsort(key, kind="stable").astype(np.int64)


def samples_per_rank(remaining: int, world: int, batch_size: int, last_batch: str) -> int:
    """How many positions each rank reads when ``remaining`` samples are left in the epoch."""
    if remaining <= 0:
        return 0
    per_round = world * batch_size
    if last_batch == "pad":
        return -(-remaining // per_round) * batch_size
    if last_batch == "drop":
        return (remaining // per_round) * batch_size
    return -(-remaining // world)


def shard(n: int, *, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0,
          epoch: int = 0, shuffle: bool = True, last_batch: str = "pad", start: int = 0,
          groups: Optional[np.ndarray] = None, window: int = 0,
          order: Optional[np.ndarray] = None) -> Shard:
    """This rank's sample indices for the epoch, from global position ``start`` on; with
    ``window`` and ``groups`` (each sample's shard), in the shard-aware order; with ``order``
    (``n`` sample indices: a weighted draw or a mixture's, ``fastload.order.sampling``), that
    order instead of a permutation."""
    _check(n, batch_size, rank, world, seed, epoch, last_batch, start)
    per_rank = samples_per_rank(n - start, world, batch_size, last_batch)
    positions = start + rank + world * np.arange(per_rank, dtype=np.int64)
    if order is not None:
        if len(order) != n:
            raise SpecError(f"shard: order has {len(order)} entries for n={n} positions")
    elif not shuffle:
        order = np.arange(n, dtype=np.int64)
    elif window:
        if groups is None or len(groups) != n:
            raise SpecError(f"shard: window={window} needs each of the {n} samples' shard "
                            "number (groups=)")
        order = shard_window_order(groups, seed, epoch, window)
    else:
        order = permutation(n, seed, epoch)
    return Shard(indices=order[positions % n], positions=positions, padded=positions >= n,
                 batch_size=batch_size)


def _check(n: int, batch_size: int, rank: int, world: int, seed: int, epoch: int,
           last_batch: str, start: int) -> None:
    for name, value, low in (("n", n, 1), ("batch_size", batch_size, 1), ("world", world, 1),
                             ("rank", rank, 0), ("seed", seed, 0), ("epoch", epoch, 0),
                             ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise SpecError(f"shard: {name}={value!r} must be an int >= {low}")
    if rank >= world:
        raise SpecError(f"shard: rank={rank} must be < world={world}")
    if last_batch not in POLICIES:
        raise SpecError(f"shard: last_batch={last_batch!r} must be one of {POLICIES}")
