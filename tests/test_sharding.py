"""The sharding contract (DESIGN.md): equal batches on every rank, padding marks, resume."""

import numpy as np
import pytest

from fastload.errors import SpecError
from fastload.order.sharding import permutation, shard

CASES = [(n, w, b) for n in (1, 7, 10, 33, 64) for w in (1, 2, 3, 4) for b in (1, 4, 5)]


def test_docstring_worked_example():
    order = permutation(10, 0, 0)
    r0 = shard(10, batch_size=4, rank=0, world=2)
    r1 = shard(10, batch_size=4, rank=1, world=2)
    assert r0.indices.tolist() == order[[0, 2, 4, 6, 8, 0, 2, 4]].tolist()
    assert r1.indices.tolist() == order[[1, 3, 5, 7, 9, 1, 3, 5]].tolist()
    assert r0.padded.tolist() == [False] * 5 + [True] * 3
    assert len(r0) == len(r1) == 2
    drop = [shard(10, batch_size=4, rank=r, world=2, last_batch="drop") for r in (0, 1)]
    assert [d.indices.tolist() for d in drop] == [order[[0, 2, 4, 6]].tolist(), order[[1, 3, 5, 7]].tolist()]
    part = [shard(10, batch_size=4, rank=r, world=2, last_batch="partial") for r in (0, 1)]
    assert [p.indices.tolist() for p in part] == [order[[0, 2, 4, 6, 8]].tolist(), order[[1, 3, 5, 7, 9]].tolist()]
    assert [len(p) for p in part] == [2, 2]
    resumed = shard(10, batch_size=4, rank=0, world=1, start=8)
    assert resumed.indices.tolist() == order[[8, 9, 0, 1]].tolist()
    assert resumed.padded.tolist() == [False, False, True, True]


def _all(n, w, b, policy, **kw):
    return [shard(n, batch_size=b, rank=r, world=w, last_batch=policy, seed=3, **kw) for r in range(w)]


@pytest.mark.parametrize("n, w, b", CASES)
def test_pad_gives_equal_batches_disjoint_real_samples_covering_everything(n, w, b):
    shards = _all(n, w, b, "pad")
    assert len({len(s) for s in shards}) == 1
    assert all(len(s.indices) == len(s) * b for s in shards)
    real = np.concatenate([s.indices[~s.padded] for s in shards])
    assert sorted(real.tolist()) == list(range(n))
    assert len(np.concatenate([s.indices for s in shards])) == -(-n // (w * b)) * w * b


@pytest.mark.parametrize("n, w, b", CASES)
def test_drop_and_partial(n, w, b):
    drop = _all(n, w, b, "drop")
    assert {len(s.indices) for s in drop} == {(n // (w * b)) * b}
    kept = np.concatenate([s.indices for s in drop])
    assert len(set(kept.tolist())) == len(kept) and not any(s.padded.any() for s in drop)
    part = _all(n, w, b, "partial")
    assert {len(s.indices) for s in part} == {-(-n // w)}
    assert len({len(s) for s in part}) == 1
    real = np.concatenate([s.indices[~s.padded] for s in part])
    assert sorted(real.tolist()) == list(range(n))


def test_epoch_reshuffles_deterministically_and_shuffle_false_is_identity():
    a = shard(50, batch_size=5, seed=1, epoch=0).indices
    assert np.array_equal(a, shard(50, batch_size=5, seed=1, epoch=0).indices)
    assert not np.array_equal(a, shard(50, batch_size=5, seed=1, epoch=1).indices)
    assert not np.array_equal(a, shard(50, batch_size=5, seed=2, epoch=0).indices)
    assert shard(6, batch_size=4, shuffle=False).indices.tolist() == [0, 1, 2, 3, 4, 5, 0, 1]


@pytest.mark.parametrize("n, w_old, w_new, b, batches_done", [
    (103, 4, 2, 4, 3), (103, 2, 3, 4, 5), (50, 3, 3, 2, 4), (17, 1, 4, 3, 2), (40, 2, 1, 5, 3)])
def test_resume_on_another_world_sees_each_remaining_sample_once(n, w_old, w_new, b, batches_done):
    before = _all(n, w_old, b, "pad")
    seen = np.concatenate([s.indices[:batches_done * b][~s.padded[:batches_done * b]] for s in before])
    start = batches_done * w_old * b
    after = _all(n, w_new, b, "pad", start=start)
    assert len({len(s) for s in after}) == 1
    rest = np.concatenate([s.indices[~s.padded] for s in after])
    assert len(set(rest.tolist())) == len(rest)
    assert sorted(np.concatenate([seen, rest]).tolist()) == list(range(n))


def test_resume_on_same_world_gives_exactly_the_remaining_batches():
    full = shard(37, batch_size=4, rank=1, world=3, seed=9, epoch=2)
    rest = shard(37, batch_size=4, rank=1, world=3, seed=9, epoch=2, start=2 * 3 * 4)
    assert np.array_equal(full.indices[8:], rest.indices)
    assert np.array_equal(full.positions[8:], rest.positions)


def test_resume_past_the_end_is_empty():
    assert len(shard(10, batch_size=4, world=2, start=16)) == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"rank": 2, "world": 2}, "rank=2 must be < world=2"),
    ({"last_batch": "keep"}, "last_batch='keep'"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"start": -1}, "start=-1"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(SpecError, match=message):
        shard(10, **{"batch_size": 2, **kwargs})


@pytest.mark.parametrize("last_batch", ["pad", "drop", "partial"])
@pytest.mark.parametrize("n,w,b,start", [(33, 2, 4, 0), (33, 3, 5, 7), (10, 4, 1, 9), (7, 2, 4, 8)])
def test_epoch_tasks_are_the_shards_batches_made_on_demand(last_batch, n, w, b, start):
    """The lazy task sequence a loader hands its backend: the shard's batches, counted without
    computing the shard, which is computed once, on the first task asked for."""
    from fastload.batch import EpochTasks
    from fastload.order.sharding import samples_per_rank

    expected = shard(n, batch_size=b, rank=w - 1, world=w, seed=3, epoch=2, start=start,
                     last_batch=last_batch)
    made = []

    def make():
        made.append(1)
        return expected

    count = -(-samples_per_rank(n - start, w, b, last_batch) // b)
    tasks = EpochTasks(3, 2, count, make)
    assert len(tasks) == len(expected) and not made
    for k in range(-len(tasks), len(tasks)):
        part = expected.batch(k % len(tasks))
        task = tasks[k]
        assert np.array_equal(task.indices, expected.indices[part])
        assert np.array_equal(task.positions, expected.positions[part])
        assert np.array_equal(task.padded, expected.padded[part])
        assert (task.seed, task.epoch) == (3, 2)
    assert made == [1] or len(tasks) == 0
    assert [t.positions.tolist() for t in tasks[1:3]] == [t.positions.tolist() for t in list(tasks)[1:3]]
    with pytest.raises(IndexError):
        tasks[len(tasks)]


def test_task_run_takes_queued_sequences_in_order():
    from fastload.batch import TaskRun

    run = TaskRun("abc", "", "de")
    assert len(run) == 5 and [run[k] for k in range(5)] == list("abcde")
    assert [run.popleft() for _ in range(2)] == ["a", "b"]
    run.extend("fg")
    assert len(run) == 5 and run[0] == "c" and run[4] == "g"
    assert "".join(run.popleft() for _ in range(5)) == "cdefg"
    with pytest.raises(IndexError):
        run.popleft()
    with pytest.raises(IndexError):
        run[0]


def test_shard_window_order_reads_w_shards_at_a_time():
    """The shard-aware order: a permutation from (seed, epoch) alone, whose consecutive runs
    each hold the samples of exactly ``w`` shards (the last group may hold fewer)."""
    from fastload.order.sharding import shard_window_order

    groups = np.arange(103) % 7  # striped: sample i in shard i % 7
    order = shard_window_order(groups, seed=3, epoch=1, window=2)
    assert sorted(order.tolist()) == list(range(103))
    assert np.array_equal(order, shard_window_order(groups, 3, 1, 2))
    assert not np.array_equal(order, shard_window_order(groups, 3, 2, 2))
    assert not np.array_equal(order, shard_window_order(groups, 4, 1, 2))
    run_shards = []
    at = 0
    while at < len(order):
        first = set(groups[order[at:at + 1]].tolist())
        run = []
        while at < len(order) and (len(first | {groups[order[at]]}) <= 2):
            first.add(int(groups[order[at]]))
            run.append(int(order[at]))
            at += 1
        run_shards.append(sorted(first))
        assert sorted(run) == sorted(np.flatnonzero(np.isin(groups, sorted(first))).tolist())
    assert [len(s) for s in run_shards] == [2, 2, 2, 1]
    assert sorted(sum(run_shards, [])) == list(range(7))  # every shard in one group, once
    # shuffled within a group, not shard by shard
    assert len(set(groups[order[:10]].tolist())) == 2


@pytest.mark.parametrize("n, w_old, w_new, b, batches_done", [(103, 4, 2, 4, 3), (50, 3, 3, 2, 4)])
def test_shard_window_keeps_the_resume_and_elastic_contract(n, w_old, w_new, b, batches_done):
    groups = np.arange(n) % 5
    kwargs = dict(seed=7, epoch=2, groups=groups, window=2, last_batch="pad")
    before = [shard(n, batch_size=b, rank=r, world=w_old, **kwargs) for r in range(w_old)]
    assert len({len(s) for s in before}) == 1
    seen = np.concatenate([s.indices[:batches_done * b][~s.padded[:batches_done * b]] for s in before])
    after = [shard(n, batch_size=b, rank=r, world=w_new, start=batches_done * w_old * b, **kwargs)
             for r in range(w_new)]
    assert len({len(s) for s in after}) == 1
    rest = np.concatenate([s.indices[~s.padded] for s in after])
    assert sorted(np.concatenate([seen, rest]).tolist()) == list(range(n))
    with pytest.raises(SpecError, match="groups="):
        shard(n, batch_size=b, window=2, groups=None)
