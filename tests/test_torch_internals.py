"""Each private torch internal fastload relies on still exists and means what it did: a torch
release that removes or renames one fails here, by name."""

import os
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fastload.backends import torch_internals as ti


class Slow(Dataset):
    def __init__(self, sleep_on=None):
        self.sleep_on = sleep_on

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == self.sleep_on:
            time.sleep(30)
        return i


def test_storage_uses_counts_views_and_aliases():
    t = torch.zeros(4)
    base = ti.storage_uses(t)
    assert isinstance(base, int)
    view, alias = t[1:], t.numpy()
    assert ti.storage_uses(t) == base + 2
    del view, alias
    assert ti.storage_uses(t) == base


def test_new_shared_storage_is_in_shared_memory():
    storage = ti.new_shared_storage(64)
    assert storage.is_shared() and storage.nbytes() == 64


def test_dataloader_iterator_internals():
    loader = DataLoader(Slow(), batch_size=2, num_workers=2, persistent_workers=True)
    it = iter(loader)
    next(it)
    threads = ti.helper_threads(it)
    assert len(threads) >= 2 and all(t.is_alive() for t in threads)
    worker, pid = ti.awaited_worker(it)
    assert worker in (0, 1) and pid == it._workers[worker].pid
    workers = list(it._workers)
    ti.shutdown_workers(loader, it)
    assert loader._iterator is None and not any(w.is_alive() for w in workers)


def test_timeout_and_worker_failure_are_recognised():
    loader = DataLoader(Slow(sleep_on=0), batch_size=2, num_workers=1, timeout=0.5)
    it = iter(loader)
    with pytest.raises(RuntimeError) as info:
        next(it)
    assert ti.is_timeout(info.value) and ti.worker_failure(info.value)
    worker, _ = ti.awaited_worker(it)
    ti.shutdown_workers(loader, it, stuck=worker)
    assert not any(w.is_alive() for w in it._workers)
    assert not ti.worker_failure(RuntimeError("CUDA out of memory"))
    dead = RuntimeError("DataLoader worker (pid(s) 123) exited unexpectedly")
    assert ti.worker_failure(dead) and not ti.is_timeout(dead)


def test_warn_workers_once_switches_off_the_check_on_that_loader_only():
    import warnings

    many = len(os.sched_getaffinity(0)) + 2
    loader = torch.utils.data.DataLoader(list(range(4)), num_workers=many)
    other = torch.utils.data.DataLoader(list(range(4)), num_workers=many)
    ti.warn_workers_once(loader)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        loader.check_worker_number_rationality()
        assert got == []
        other.check_worker_number_rationality()  # torch's own check, still there
    assert len(got) == 1 and "will create" in str(got[0].message)
