"""DataLoader habits: what a torch.utils.data.DataLoader user does keeps meaning what it meant."""

import os
import signal
import time

import pytest
import torch
from torch.utils.data import DataLoader

import fastload as fl
from conftest import decode_index, file_index

UINT8 = fl.Pipeline(fl.Decode(), fl.Resize((16, 16)))
TRAIN = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(16), fl.RandomFlip())


def indices(batches):
    return [b.indices.tolist() for b in batches]


class BytesDataset:
    """A map-style dataset of (encoded bytes, label), as a user would write one."""

    def __init__(self, folder):
        self.src = fl.FolderSource(folder)

    def __len__(self):
        return len(self.src)

    def __getitem__(self, i):
        return self.src.path(i).read_bytes(), int(self.src.labels[i])


def test_peeking_at_one_batch_does_not_take_it_from_the_epoch(jpeg_folder):
    with fl.loader(jpeg_folder, TRAIN, 8, num_workers=2, shuffle=True, seed=3) as ld:
        images, labels = next(iter(ld))
        epoch = list(ld)
        assert ld.epoch == 1
    assert len(epoch) == len(ld) == 5
    assert torch.equal(epoch[0].images, images) and torch.equal(epoch[0].labels, labels)
    with fl.loader(jpeg_folder, TRAIN, 8, num_workers=0, shuffle=True, seed=3) as ld:
        assert indices(list(ld)) == indices(epoch)


def test_a_second_iterator_ends_the_first_with_a_clear_error(jpeg_folder):
    with fl.loader(jpeg_folder, UINT8, 4, num_workers=1) as ld:
        first = iter(ld)
        next(first)
        second = iter(ld)
        assert next(second).indices.tolist() == [0, 1, 2, 3]  # the epoch from its beginning
        with pytest.raises(RuntimeError, match="ended by a newer iter"):
            next(first)
        assert len([next(second)] + list(second)) == len(ld) - 1


def test_default_counts_each_sample_once_in_one_process_and_pads_across_ranks(jpeg_folder):
    with fl.loader(jpeg_folder, UINT8, 8, num_workers=0) as ld:
        batches = list(ld)
    assert [len(b.indices) for b in batches] == [8, 8, 8, 8, 5]
    assert sorted(i for b in batches for i in b.indices.tolist()) == list(range(37))
    assert not any(b.padded.any() for b in batches)
    for rank in (0, 1):
        with fl.loader(jpeg_folder, UINT8, 8, num_workers=0, dist=(rank, 2)) as ld:
            sizes = [len(b.indices) for b in ld]
        assert sizes == [8, 8, 8]  # equal batches on every rank, repeats marked padded


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_the_constructor_line_swap_trains_on_the_samples_a_dataloader_gives(jpeg_folder, shuffle,
                                                                            drop_last):
    """DataLoader(ds, batch_size, shuffle, drop_last, num_workers, pin_memory,
    persistent_workers) -> fl.loader(ds, pipeline, the same keywords): the same batch count and
    sizes, each sample at most once per epoch; without shuffle, the very same batches."""
    dataset = BytesDataset(jpeg_folder)
    kw = dict(batch_size=8, shuffle=shuffle, drop_last=drop_last, num_workers=2, pin_memory=True,
              persistent_workers=True, timeout=60)
    reference = DataLoader(list(range(len(dataset))), **kw)
    with fl.loader(dataset, UINT8, **kw) as ld:
        for epoch in range(2):
            ours = [b.indices.tolist() for b in ld]
            theirs = [b.tolist() for b in reference]
            assert [len(b) for b in ours] == [len(b) for b in theirs] and len(ours) == len(ld)
            flat = [i for b in ours for i in b]
            assert len(set(flat)) == len(flat) == (32 if drop_last else 37)
            if not shuffle:
                assert ours == theirs
            for batch in [ld.source.read(i) for i in flat[:3]]:
                assert isinstance(batch[0], bytes)


def test_drop_last_is_last_batch_drop_and_generator_gives_the_seed(jpeg_folder):
    gen = torch.Generator().manual_seed(1234)
    with fl.loader(jpeg_folder, TRAIN, 8, num_workers=0, shuffle=True, drop_last=True,
                   generator=gen) as ld:
        a = indices(ld)
    with fl.loader(jpeg_folder, TRAIN, 8, num_workers=0, shuffle=True, last_batch="drop",
                   seed=1234) as ld:
        b = indices(ld)
    assert a == b and len(a) == 4


def test_persistent_workers_false_stops_the_workers_when_an_iteration_ends(jpeg_folder):
    with fl.loader(jpeg_folder, TRAIN, 8, num_workers=2, shuffle=True, seed=1,
                   persistent_workers=False) as ld:
        first = list(ld)
        assert ld._producer._loader._iterator is None and ld._producer._hosts is None
        second = list(ld)
    with fl.loader(jpeg_folder, TRAIN, 8, num_workers=2, shuffle=True, seed=1) as ld:
        assert indices(first) + indices(second) == indices(ld) + indices(ld)


class StallingSource(fl.FolderSource):
    """Blocks on one sample while a flag file exists (a hung network filesystem)."""

    def __init__(self, root, stall_index, flag):
        super().__init__(root)
        self.stall_index, self.flag = stall_index, str(flag)

    def read(self, index):
        while index == self.stall_index and os.path.exists(self.flag):
            time.sleep(0.05)
        return super().read(index)


def test_timeout_names_the_worker_samples_and_files_then_recovers(jpeg_folder, tmp_path):
    flag = tmp_path / "stall"
    flag.write_text("")
    source = StallingSource(jpeg_folder, 9, flag)
    with fl.loader(source, UINT8, 4, num_workers=2, timeout=8) as ld:
        with pytest.raises(fl.LoaderTimeout) as info:
            list(ld)
        message = str(info.value)
        assert "worker 0 (pid" in message and "[8, 9, 10, 11]" in message
        assert source.locate(9) in message and "timeout=8 s" in message
        assert f"it was on sample 9: {source.locate(9)}" in message  # the one it hangs on
        flag.unlink()
        batches = list(ld)  # fresh workers
    assert indices(batches)[2] == [8, 9, 10, 11] and len(batches) == 10


def test_a_stopped_worker_is_caught_by_the_watchdog(jpeg_folder):
    with fl.loader(jpeg_folder, UINT8, 4, num_workers=2, timeout=8, prefetch_factor=1) as ld:
        it = iter(ld)
        next(it)
        worker = ld._producer._hosts._workers[1]
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            with pytest.raises(fl.LoaderTimeout, match=f"worker 1 \\(pid {worker.pid}\\)"):
                list(it)
        finally:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGCONT)
        worker.join(10)
        assert not worker.is_alive()
        assert len(list(ld)) == len(ld)


def test_a_map_style_dataset_of_bytes_gives_the_folders_batches(jpeg_folder):
    with fl.loader(BytesDataset(jpeg_folder), TRAIN, 8, num_workers=2, shuffle=True, seed=2) as ld:
        ours = [(b.images, b.indices) for b in ld]
    with fl.loader(jpeg_folder, TRAIN, 8, num_workers=0, shuffle=True, seed=2) as ld:
        theirs = [(b.images, b.indices) for b in ld]
    for (a, i), (b, j) in zip(ours, theirs):
        assert torch.equal(a, b) and torch.equal(i, j)


def test_a_dataset_of_the_wrong_kind_is_named(jpeg_folder):
    from PIL import Image

    class Decoded(BytesDataset):
        def __getitem__(self, i):
            return Image.open(self.src.path(i)), 0

    with pytest.raises(fl.SourceError, match=r"Decoded\[0\]: .*returned \(PIL\.\S+ImageFile, int\)"):
        fl.loader(Decoded(jpeg_folder), UINT8, 4)
    with pytest.raises(fl.SourceError, match="must be a path, a Source"):
        fl.loader(42, UINT8, 4)


def test_a_source_needs_only_the_documented_methods(jpeg_folder):
    class Minimal:
        def __init__(self):
            self.inner = fl.FolderSource(jpeg_folder)

        def __len__(self):
            return len(self.inner)

        def read(self, i):
            return self.inner.read(i)

        def describe(self):
            return {"kind": "minimal"}

        def locate(self, i):
            return f"minimal:{i}"

    assert not hasattr(Minimal(), "classes")
    with fl.loader(Minimal(), UINT8, 8, num_workers=0) as ld:
        batch = next(iter(ld))
    src = fl.FolderSource(jpeg_folder)
    assert [decode_index(img) for img in batch.images] == \
        [file_index(src.path(i)) for i in range(8)]


def test_exact_mean_counts_each_sample_once(jpeg_folder):
    """Two ranks with padding: the per-rank sums of unpadded samples add up to the exact mean
    (compute() all-reduces these when torch.distributed is initialized; see test_ddp)."""
    totals = []
    for rank in (0, 1):
        mean = fl.ExactMean()
        with fl.loader(jpeg_folder, UINT8, 8, num_workers=0, dist=(rank, 2)) as ld:
            for batch in ld:
                mean.update(batch.indices % 2 == 0, batch)
        totals.append((float(mean.total), float(mean.count)))
    assert sum(c for _, c in totals) == 37
    assert sum(t for t, _ in totals) == 19  # the even indices 0..36
    with pytest.raises(fl.SpecError, match="one value per sample"):
        fl.ExactMean().update(torch.zeros(3), torch.zeros(4, dtype=torch.bool))



def test_the_dali_backend_has_the_same_watchdog(jpeg_folder, tmp_path):
    pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install 'fastload-images[dali]'")
    flag = tmp_path / "stall"
    flag.write_text("")
    source = StallingSource(jpeg_folder, 5, flag)
    ld = fl.loader(source, UINT8, 4, backend="dali", num_workers=1, timeout=2)
    try:
        with pytest.raises(fl.LoaderTimeout, match=r"timeout=2 s \(DALI's feeder was reading "
                                                   r"samples \[4, 5, 6, 7\].*; it was on "
                                                   r"sample 5: .*img_00015.jpg"):
            list(ld)
    finally:
        flag.unlink()  # lets the stuck feeder thread finish
        ld.close()


SCRIPT = '''
import fastload as fl
{dali}
def train():
    with fl.loader({folder!r}, pipe, 4, num_workers=1, {context}) as ld:
        print("batches", len(list(ld)))
pipe = fl.Pipeline(fl.Decode(), fl.Resize((8, 8)))
{guard}
    train()
'''


@pytest.mark.parametrize("dali", [False, True])
def test_a_script_without_a_main_guard_gets_one_clear_error(jpeg_folder, tmp_path, dali):
    import subprocess
    import sys

    if dali:
        pytest.importorskip("nvidia.dali")
    imports = "import nvidia.dali" if dali else ""
    context = "" if dali else "multiprocessing_context='spawn'"
    for guard, ok in (("if True:", False), ("if __name__ == '__main__':", True)):
        script = tmp_path / f"train_{ok}.py"
        script.write_text(SCRIPT.format(dali=imports, guard=guard, folder=str(jpeg_folder),
                                        context=context))
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=120)
        if ok:
            assert out.returncode == 0 and "batches 10" in out.stdout, out.stderr[-2000:]
        else:
            assert out.returncode != 0
            assert f"{script}:9: fastload.loader(..., num_workers=1) runs at the top level" \
                in out.stderr
            assert "if __name__ == '__main__':" in out.stderr
            assert "bootstrapping phase" not in out.stderr and out.stderr.count("Traceback") == 1
