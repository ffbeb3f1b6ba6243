"""DDP with real processes (torch.multiprocessing spawn, gloo on CPU): equal batches on every
rank, no hang at the end of an epoch, deterministic reshuffles, resume across world sizes."""

import json
import os

import numpy as np
import pytest
import torch.multiprocessing as mp

from ddp_worker import free_port, run
from fastload.order.sharding import permutation

N, BATCH = 37, 4
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the spawned ranks talk over loopback only


def launch(world, tmp_path, timeout=180, **cfg):
    out = tmp_path / f"w{world}-{free_port()}"
    out.mkdir()
    cfg = {"port": free_port(), "out": str(out), "batch": BATCH, **cfg}
    ctx = mp.start_processes(run, args=(world, cfg), nprocs=world, join=False, start_method="spawn")
    files = [out / f"rank{r}.json" for r in range(world)]
    try:
        while not ctx.join(timeout):
            pass
    except mp.ProcessExitedException as exc:
        # Every rank writes its results before the final barrier and teardown. An abort after
        # all of them exist is gloo's teardown (seen rarely on 2 cores), not a data fault; an
        # abort earlier leaves a file missing and fails here.
        if exc.signal_name != "SIGABRT" or not all(f.exists() for f in files):
            raise
    return [json.loads(f.read_text()) for f in files]


def real(epoch_record):
    return [i for b in epoch_record["batches"] for i, p in zip(b["indices"], b["padded"]) if not p]


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_equal_batches_disjoint_cover_and_two_ddp_epochs(jpeg_folder, tmp_path, world):
    ranks = launch(world, tmp_path, data=str(jpeg_folder), seed=3)
    expected = -(-N // (world * BATCH))
    for e in range(2):
        counts = [len(r["epochs"][e]["batches"]) for r in ranks]
        assert counts == [expected] * world
        assert all(r["epochs"][e]["len"] == expected for r in ranks)
        assert all(r["epochs"][e]["all_ranks_batches"] == expected * world for r in ranks)
        seen = [real(r["epochs"][e]) for r in ranks]
        flat = [i for s in seen for i in s]
        assert sorted(flat) == list(range(N))  # disjoint, and the union is the dataset
        # every rank used the same global order: interleaving the ranks rebuilds permutation(N, seed, e)
        order = permutation(N, 3, e)
        positions = np.arange(expected * BATCH * world)
        for r, rank in enumerate(ranks):
            got = [i for b in rank["epochs"][e]["batches"] for i in b["indices"]]
            assert got == order[positions[r::world] % N].tolist()
    losses = [b["loss"] for b in ranks[0]["epochs"][1]["batches"]]
    assert all(np.isfinite(losses))
    if world > 1:
        first = [i for b in ranks[0]["epochs"][0]["batches"] for i in b["indices"]]
        second = [i for b in ranks[0]["epochs"][1]["batches"] for i in b["indices"]]
        assert first != second  # set_epoch reshuffled


@pytest.mark.slow
def test_same_seed_same_batches_run_to_run_and_init_after_the_loader(jpeg_folder, tmp_path):
    a = launch(2, tmp_path, data=str(jpeg_folder), seed=7, epochs=[4])
    b = launch(2, tmp_path, data=str(jpeg_folder), seed=7, epochs=[4], loader_before_init=True)
    for ra, rb in zip(a, b):
        assert ra["epochs"][0]["batches"] == rb["epochs"][0]["batches"]


@pytest.mark.slow
@pytest.mark.parametrize("old, new", [(4, 2), (2, 3)])
def test_resume_on_another_world_size_sees_each_remaining_sample_once(jpeg_folder, tmp_path, old, new):
    stopped = launch(old, tmp_path, data=str(jpeg_folder), seed=5, epochs=[2], stop_after=2)
    state = stopped[0]["state"]
    assert all(r["state"] == state for r in stopped)  # every rank holds the same state
    assert state["epoch"] == 2 and state["position"] == 2 * old * BATCH
    before = [i for r in stopped for i in real(r["epochs"][0])]
    resumed = launch(new, tmp_path, data=str(jpeg_folder), seed=0, epochs=[2], state=state)
    counts = {len(r["epochs"][0]["batches"]) for r in resumed}
    assert len(counts) == 1  # equal on the new ranks too
    after = [i for r in resumed for i in real(r["epochs"][0])]
    assert len(set(after)) == len(after)
    assert sorted(before + after) == list(range(N))


@pytest.mark.slow
def test_mid_epoch_resume_same_world_gives_exactly_the_remaining_batches(jpeg_folder, tmp_path):
    full = launch(2, tmp_path, data=str(jpeg_folder), seed=9, epochs=[1], workers=1)
    stopped = launch(2, tmp_path, data=str(jpeg_folder), seed=9, epochs=[1], stop_after=3, workers=1)
    resumed = launch(2, tmp_path, data=str(jpeg_folder), epochs=[1], state=stopped[0]["state"], workers=1)
    for f, s, r in zip(full, stopped, resumed):
        batches = [b["indices"] for b in f["epochs"][0]["batches"]]
        assert [b["indices"] for b in s["epochs"][0]["batches"]] == batches[:3]
        assert [b["indices"] for b in r["epochs"][0]["batches"]] == batches[3:]


@pytest.mark.slow
def test_explicit_dist_argument_overrides_torch_distributed(jpeg_folder, tmp_path):
    # two processes in one gloo group, but each told it is rank 0 of 1: both read everything
    ranks = launch(2, tmp_path, data=str(jpeg_folder), epochs=[0], dist=(0, 1))
    for r in ranks:
        assert sorted(real(r["epochs"][0])) == list(range(N))


@pytest.mark.slow
def test_ddp_evaluation_counts_every_sample_exactly_once(jpeg_folder, tmp_path):
    """2 ranks, 37 samples: the default pads (equal batch counts, no hang) and ExactMean over
    the ranks gives the exact accuracy (19 of 37 even indices are 'right')."""
    ranks = launch(2, tmp_path, data=str(jpeg_folder), eval=True)
    counts = {len(r["epochs"][0]["batches"]) for r in ranks}
    assert counts == {5}
    seen = [i for r in ranks for i in real(r["epochs"][0])]
    assert sorted(seen) == list(range(N))
    assert all(r["accuracy"] == 19 / 37 for r in ranks)
