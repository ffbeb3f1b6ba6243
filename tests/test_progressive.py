"""Progressive resizing: RandomResizedCrop(size=fl.by_epoch({...})) follows the epoch on both
backends, without new workers or new buffers, and resume lands on the right size."""

import pytest
import torch

import fastload as fl
from fastload.ops.schedule import by_epoch


def pipeline(sizes):
    return fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(fl.by_epoch(sizes)), fl.RandomFlip(),
                       fl.Normalize(), fl.RandomErasing(p=0.5))


PIPE = pipeline({0: 16, 2: 24, 3: 20})


def test_the_schedule_worked_example():
    s = by_epoch({0: 160, 10: 176, 14: 192})
    assert [s.at(e) for e in (0, 9, 10, 13, 14, 99)] == [160, 160, 176, 176, 192, 192]
    assert PIPE.at_epoch(1).output_size == (16, 16) and PIPE.at_epoch(2).output_size == (24, 24)
    assert PIPE.largest_output_size() == (24, 24) and PIPE.describe(3)["shape"] == (3, 20, 20)
    assert fl.Pipeline.from_json(PIPE.to_json()) == PIPE
    with pytest.raises(fl.SpecError, match="use pipeline.at_epoch"):
        PIPE.output_size
    with pytest.raises(fl.SpecError, match="must give a value for epoch 0"):
        fl.by_epoch({5: 160})
    with pytest.raises(fl.SpecError, match=r"RandomResizedCrop: size=\(0, 0\) must be positive"):
        fl.RandomResizedCrop(fl.by_epoch({0: 0}))


def shapes_and_batches(folder, workers, epochs, backend="torch"):
    out = []
    with fl.loader(folder, PIPE, 8, num_workers=workers, seed=2, shuffle=True,
                   backend=backend) as ld:
        producer = ld._producer
        pool = [b.untyped_storage().data_ptr() for b in producer._pool.buffers]
        hosts = None
        for epoch in range(epochs):
            batches = [b.images.clone() for b in ld]
            out.append(batches)
            if backend == "torch" and workers:
                if hosts is None:
                    hosts = producer._hosts
                assert producer._hosts is hosts  # the same workers all along
        after = [b.untyped_storage().data_ptr() for b in producer._pool.buffers]
        assert after[:len(pool)] == pool  # none replaced (DALI's pool grows as it needs)
    return out


def test_sizes_follow_the_epoch_with_the_same_workers_and_buffers(photo_folder):
    runs = [shapes_and_batches(photo_folder, w, 4) for w in (0, 2)]
    for epochs in runs:
        assert [tuple(e[0].shape[2:]) for e in epochs] == [(16, 16), (16, 16), (24, 24), (20, 20)]
    for a, b in zip(*runs):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_resume_in_the_middle_of_the_schedule_lands_on_the_right_size(photo_folder):
    full = shapes_and_batches(photo_folder, 0, 4)
    with fl.loader(photo_folder, PIPE, 8, num_workers=2, seed=2, shuffle=True) as ld:
        ld.set_epoch(2)
        it = iter(ld)
        next(it)
        state = ld.state_dict()
    with fl.loader(photo_folder, PIPE, 8, num_workers=1, seed=0, shuffle=True) as ld:
        ld.load_state_dict(state)
        rest = [b.images for b in ld]
        following = [b.images for b in ld]
    assert all(torch.equal(x, y) for x, y in zip(rest, full[2][1:]))
    assert rest[0].shape[2:] == (24, 24) and following[0].shape[2:] == (20, 20)
    assert all(torch.equal(x, y) for x, y in zip(following, full[3]))


def test_the_dali_backend_follows_the_schedule(photo_folder):
    pytest.importorskip("nvidia.dali")
    epochs = shapes_and_batches(photo_folder, 1, 4, backend="dali")
    assert [tuple(e[0].shape[2:]) for e in epochs] == [(16, 16), (16, 16), (24, 24), (20, 20)]
    with pytest.raises(fl.OpNotSupported, match="by_epoch size: backend='dali-native'"):
        fl.loader(photo_folder, PIPE, 8, backend="dali-native")
