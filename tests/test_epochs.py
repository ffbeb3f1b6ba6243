"""Cross-epoch prefetch on the torch backend: the workers go straight on into the next epoch,
and whatever the loop does next (carry on, jump to another epoch, resume a checkpoint, break
and re-enter) it gets exactly the batches a fresh loader would give."""

import os

import pytest
import torch

import fastload as fl

def loader(folder, **kw):
    return fl.loader(folder, PIPELINE, **{"batch_size": 4, "seed": 5, "shuffle": True, **kw})


PIPELINE = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(16), fl.RandomFlip(), fl.Normalize(),
                       fl.RandomErasing(p=0.5, value="random"))


def snapshot(batches):
    return [(b.images.clone(), b.indices.clone(), b.labels.clone()) for b in batches]


def fresh_epoch(folder, epoch, seed=5):
    with fl.loader(folder, PIPELINE, batch_size=4, num_workers=0, seed=seed, shuffle=True) as ld:
        ld.set_epoch(epoch)
        return snapshot(ld)


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)


def producer(ld):
    return ld._producer


@pytest.mark.parametrize("workers", [0, 2])
def test_next_epoch_is_queued_behind_this_one_and_continued(jpeg_folder, workers):
    with loader(jpeg_folder, num_workers=workers) as ld:
        first = snapshot(ld)
        # epoch 0 is done; epoch 1's tasks are already on the stream (workers busy with them)
        pending = list(producer(ld)._sampler.pending)
        assert len(pending) == len(ld) and {t.epoch for t in pending} == {1}
        stream = producer(ld)._stream
        second = snapshot(ld)
        assert producer(ld)._stream is stream  # continued, not restarted
        third = snapshot(ld)
    same(first, fresh_epoch(jpeg_folder, 0))
    same(second, fresh_epoch(jpeg_folder, 1))
    same(third, fresh_epoch(jpeg_folder, 2))


def test_set_epoch_elsewhere_drops_the_speculation(jpeg_folder):
    with loader(jpeg_folder, num_workers=2) as ld:
        snapshot(ld)
        ld.set_epoch(7)
        jumped = snapshot(ld)
        ld.set_epoch(0)
        again = snapshot(ld)
    same(jumped, fresh_epoch(jpeg_folder, 7))
    same(again, fresh_epoch(jpeg_folder, 0))


def test_break_and_reenter_starts_the_epoch_again_and_a_restored_state_continues(jpeg_folder):
    """DataLoader's habit: a new loop starts the epoch from its beginning; the position where
    the loop broke off stays in state_dict(), and loading it continues from there."""
    with loader(jpeg_folder, num_workers=2) as ld:
        head = []
        for batch in ld:
            head += snapshot([batch])
            if len(head) == 3:
                break
        state = ld.state_dict()
        assert state["position"] == 12
        again = snapshot(ld)
        assert ld.epoch == 1
        ld.load_state_dict(state)
        rest = snapshot(ld)
    full = fresh_epoch(jpeg_folder, 0)
    same(head, full[:3])
    same(again, full)
    same(rest, full[3:])


def test_resume_from_a_checkpoint_after_speculating(jpeg_folder):
    with loader(jpeg_folder, num_workers=0) as ld:
        it = iter(ld)
        for _ in range(6):
            next(it)
        state = ld.state_dict()
    with loader(jpeg_folder, num_workers=2) as ld:
        snapshot(ld)  # epoch 0 in full: epoch 1 is now queued
        ld.load_state_dict(state)
        rest = snapshot(ld)
    same(rest, fresh_epoch(jpeg_folder, 0)[6:])


def test_a_worker_error_restarts_cleanly(tmp_path):
    from conftest import write_index_folder

    root = write_index_folder(tmp_path / "data", 24, 2)
    bad = sorted(root.glob("class_01/*.jpg"))[3]
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    with fl.loader(root, PIPELINE, batch_size=4, num_workers=2, seed=5, shuffle=False) as ld:
        with pytest.raises(fl.DecodeError, match=bad.name):
            snapshot(ld)
        assert producer(ld)._stream is None
        ld.set_epoch(0)
        with pytest.raises(fl.DecodeError, match=bad.name):
            snapshot(ld)  # the same failure again, not a hang or a stale batch


def storage(tensor):
    return tensor.untyped_storage().data_ptr()


def test_pool_buffers_are_reused_and_never_overwritten_while_held(jpeg_folder):
    """19 batches an epoch through 7 pooled buffers: a batch the loop lets go of returns its
    buffer; one it keeps (the batch, or only a numpy alias of its images) is never written over."""
    from conftest import decode_index, file_index

    def check(images, indices):
        for img, index in zip(images, indices):
            assert decode_index(img) == file_index(ld.source.path(int(index)))

    uint8 = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(16, scale=(0.5, 1.0)))
    with fl.loader(jpeg_folder, uint8, batch_size=2, num_workers=2, seed=1) as ld:
        pool = {storage(buffer) for buffer in producer(ld)._pool.buffers}
        assert len(pool) == 7
        seen = set()
        for batch in ld:
            seen.add(storage(batch.images))
            check(batch.images.numpy(), batch.indices)
        assert seen <= pool and len(seen) >= 4
        held = list(ld)
        assert len({storage(b.images) for b in held}) == len(held) == 19
        for batch in held:
            check(batch.images.numpy(), batch.indices)
        del held, batch
        aliases = [(b.images.numpy(), b.indices) for b in ld]
        for images, indices in aliases:
            check(images, indices)
        assert len({a.ctypes.data for a, _ in aliases}) == 19




@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies")
def test_dataloader_helper_threads_do_not_preempt_the_loop(jpeg_folder):
    """The index queues' feeder threads in this process run as SCHED_BATCH (same CPU share, no
    wake-up preemption of the loop); the caller's own thread keeps its policy."""
    before = os.sched_getscheduler(0)
    with fl.loader(jpeg_folder, PIPELINE, batch_size=4, num_workers=2, seed=0) as ld:
        next(iter(ld))
        iterator = producer(ld)._loader._iterator
        feeders = [q._thread for q in iterator._index_queues if q._thread is not None]
        assert len(feeders) == 2
        for thread in feeders:
            assert os.sched_getscheduler(thread.native_id) == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == before
