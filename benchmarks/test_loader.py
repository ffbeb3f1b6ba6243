"""End to end: one epoch of fastload.loader vs the DataLoader baseline, same data and settings."""

import pytest

import fastload as fl
from fastload.tools.bench.baseline import baseline_loader

WORKERS = 2
BATCH = 64


def epoch(loader):
    return sum(len(labels) for _, labels in loader)


@pytest.fixture(scope="module", params=["train", "eval"])
def pipeline(request):
    return fl.presets.imagenet_train(224) if request.param == "train" else fl.presets.imagenet_eval(224)


def test_fastload_torch_epoch(benchmark, photo_dir, pipeline):
    with fl.loader(photo_dir, pipeline, BATCH, num_workers=WORKERS, backend="torch",
                   shuffle=True) as loader:
        epoch(loader)  # workers started, files cached
        n = benchmark.pedantic(epoch, args=(loader,), rounds=5, iterations=1)
    benchmark.extra_info.update(images=n, workers=WORKERS, batch=BATCH)


def test_baseline_dataloader_epoch(benchmark, photo_dir, pipeline):
    loader = baseline_loader(fl.FolderSource(photo_dir), pipeline, batch_size=BATCH,
                             num_workers=WORKERS, pin_memory=False)
    epoch(loader)
    n = benchmark.pedantic(epoch, args=(loader,), rounds=5, iterations=1)
    benchmark.extra_info.update(images=n, workers=WORKERS, batch=BATCH)


class _DecodeOnly:
    """The decode-only ceiling: the same files decoded (libjpeg-turbo via simplejpeg, as the
    torch backend does), nothing else; workers return only a count."""

    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        from fastload.backends.torch.imaging import decode_rgb

        decode_rgb(self.source.read(index)[0], "bench")
        return 1


def test_decode_only_ceiling_epoch(benchmark, photo_dir):
    import torch

    loader = torch.utils.data.DataLoader(_DecodeOnly(fl.FolderSource(photo_dir)), batch_size=BATCH,
                                         num_workers=WORKERS, persistent_workers=True)
    count = lambda: sum(int(b.sum()) for b in loader)  # noqa: E731
    count()
    n = benchmark.pedantic(count, rounds=5, iterations=1)
    benchmark.extra_info.update(images=n, workers=WORKERS, batch=BATCH)
