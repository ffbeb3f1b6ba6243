"""Weighted draws and mixtures across real processes (gloo on CPU, 1-4 ranks): equal batches on
every rank, the ranks together read exactly the epoch's draws, new draws each epoch, and a run
stopped on W ranks resumes on W' with each remaining draw seen once."""

import numpy as np
import pytest

import fastload as fl
from fastload.order.sampling import resolve
from test_ddp import BATCH, launch, real

WEIGHTS = {"weights": [float(i % 4) for i in range(37)], "num_samples": 45}


def expected_order(kind, cfg, seed, epoch):
    if kind == "weighted":
        return resolve(fl.Weighted(**WEIGHTS), 37, lambda: None).order(seed, epoch)
    mix = fl.Mix([tuple(p) for p in cfg["mix"]["parts"]], epoch_size=cfg["mix"]["epoch_size"])
    return mix.order.order(seed, epoch)


def config(kind, jpeg_folder, photo_folder):
    if kind == "weighted":
        return {"data": str(jpeg_folder), "weighted": WEIGHTS}
    return {"data": str(jpeg_folder), "mix": {"parts": [[str(jpeg_folder), 0.6],
                                                       [str(photo_folder), 0.4]],
                                             "epoch_size": 45}}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["weighted", "mix"])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_rank_reads_its_share_of_the_epochs_draws(jpeg_folder, photo_folder, tmp_path,
                                                        kind, world):
    cfg = config(kind, jpeg_folder, photo_folder)
    ranks = launch(world, tmp_path, seed=3, shuffle=False, **cfg)
    expected = -(-45 // (world * BATCH))
    for e in range(2):
        assert [len(r["epochs"][e]["batches"]) for r in ranks] == [expected] * world
        assert all(r["epochs"][e]["all_ranks_batches"] == expected * world for r in ranks)
        order = expected_order(kind, cfg, 3, e)
        positions = np.arange(expected * BATCH * world)
        for r, rank in enumerate(ranks):  # round-robin positions of the one global order
            got = [i for b in rank["epochs"][e]["batches"] for i in b["indices"]]
            assert got == order[positions[r::world] % 45].tolist()
        unpadded = sorted(i for r in ranks for i in real(r["epochs"][e]))
        assert unpadded == sorted(order.tolist())  # every draw once, over all ranks
    first = [i for r in ranks for i in real(r["epochs"][0])]
    second = [i for r in ranks for i in real(r["epochs"][1])]
    assert first != second  # set_epoch: new draws


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["weighted", "mix"])
@pytest.mark.parametrize("old, new", [(4, 2), (2, 3)])
def test_a_run_stopped_on_w_ranks_resumes_on_w_prime_with_each_draw_once(
        jpeg_folder, photo_folder, tmp_path, kind, old, new):
    cfg = config(kind, jpeg_folder, photo_folder)
    stopped = launch(old, tmp_path, seed=5, shuffle=False, epochs=[2], stop_after=2, **cfg)
    state = stopped[0]["state"]
    assert all(r["state"] == state for r in stopped) and state["sampling"]["kind"] == \
        ("weighted" if kind == "weighted" else "mix")
    before = [i for r in stopped for i in real(r["epochs"][0])]
    resumed = launch(new, tmp_path, shuffle=False, epochs=[2], state=state, **cfg)
    assert len({len(r["epochs"][0]["batches"]) for r in resumed}) == 1
    after = [i for r in resumed for i in real(r["epochs"][0])]
    assert sorted(before + after) == sorted(expected_order(kind, cfg, 5, 2).tolist())
