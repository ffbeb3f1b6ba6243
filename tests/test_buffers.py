"""BufferPool, the one reuse mechanism of CPU outputs: a buffer comes back only when no batch,
view or numpy alias of it is alive; a batch the caller keeps is never written over."""

import pytest
import torch

import fastload as fl
from fastload.backends import dali_available
from fastload.backends.buffers import BufferPool


def test_a_buffer_is_reused_only_once_nothing_holds_it():
    pool = BufferPool((4, 3, 8, 8), torch.float32, count=2)
    first = pool.view(0, (2, 3, 8, 8))
    assert pool.lent(0) and not pool.lent(1) and pool.free_slot() == 1
    assert pool.free_slot(exclude=[1]) == -1
    alias = first.numpy()
    del first
    assert pool.lent(0)  # the numpy alias still holds it
    del alias
    assert not pool.lent(0) and pool.free_slot() == 0


def test_take_grows_to_keep_then_hands_out_fresh_tensors():
    pool = BufferPool((2, 3, 4, 4), torch.uint8, keep=2)
    held = [pool.take((2, 3, 4, 4)) for _ in range(3)]
    assert len(pool) == 2
    ptrs = [t.untyped_storage().data_ptr() for t in held]
    assert len(set(ptrs)) == 3  # the third is outside the pool, not a reused buffer
    assert {p for p in ptrs[:2]} == {b.untyped_storage().data_ptr() for b in pool.buffers}
    del held
    again = pool.take((1, 3, 4, 4))
    assert again.untyped_storage().data_ptr() in ptrs[:2] and again.shape == (1, 3, 4, 4)


@pytest.mark.skipif(not dali_available(), reason="DALI not installed")
def test_dali_batches_kept_by_the_caller_are_never_written_over(jpeg_folder):
    pipe = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(16), fl.Normalize())
    with fl.loader(jpeg_folder, pipe, 4, backend="dali", num_workers=1, seed=1) as ld:
        held = [(b.images, b.images.clone()) for b in ld]
        assert len({images.untyped_storage().data_ptr() for images, _ in held}) == len(held)
        for images, copy in held:
            assert torch.equal(images, copy)
