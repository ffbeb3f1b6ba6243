"""End to end: one epoch of fastload.loader vs the DataLoader baseline, same data and settings."""

import pytest

import fastload as fl
from fastload.bench.baseline import baseline_loader

WORKERS = 2
BATCH = 64


def epoch(loader):
    return sum(len(labels) for _, labels in loader)


@pytest.fixture(scope="module", params=["train", "eval"])
def pipeline(request):
    return fl.presets.imagenet_train(224) if request.param == "train" else fl.presets.imagenet_eval(224)


def test_fastload_torch_epoch(benchmark, photo_dir, pipeline):
    with fl.loader(photo_dir, pipeline, BATCH, num_workers=WORKERS, backend="torch") as loader:
        epoch(loader)  # workers started, files cached
        n = benchmark.pedantic(epoch, args=(loader,), rounds=3, iterations=1)
    benchmark.extra_info.update(images=n, workers=WORKERS, batch=BATCH)


def test_baseline_dataloader_epoch(benchmark, photo_dir, pipeline):
    loader = baseline_loader(fl.FolderSource(photo_dir), pipeline, batch_size=BATCH,
                             num_workers=WORKERS, pin_memory=False)
    epoch(loader)
    n = benchmark.pedantic(epoch, args=(loader,), rounds=3, iterations=1)
    benchmark.extra_info.update(images=n, workers=WORKERS, batch=BATCH)
