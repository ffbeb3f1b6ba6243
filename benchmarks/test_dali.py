"""fastload's DALI backend vs a hand-written DALI pipeline with native readers, same data.

Both do decode + RandomResizedCrop(224) + flip + normalize (no erasing: DALI has no ready-made
RandomErasing), batch 64, DALI CPU mode unless a GPU is present, 2 threads. The hand-written one
is what a DALI user writes: readers.file with DALI's own shuffling, decoders.image_random_crop,
resize, crop_mirror_normalize, DALIGenericIterator.
"""

import pytest
import torch

import fastload as fl

dali = pytest.importorskip("nvidia.dali")

BATCH, THREADS = 64, 2
GPU = torch.cuda.is_available()


def native_loader(root):
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    @pipeline_def(batch_size=BATCH, num_threads=THREADS, device_id=0 if GPU else None, seed=0)
    def train():
        jpegs, labels = fn.readers.file(file_root=str(root), random_shuffle=True, name="reader")
        images = fn.decoders.image_random_crop(jpegs, device="mixed" if GPU else "cpu",
                                               output_type=types.RGB, random_area=[0.08, 1.0],
                                               random_aspect_ratio=[3 / 4, 4 / 3])
        images = fn.resize(images, size=[224, 224], antialias=True)
        images = fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout="CHW", mirror=fn.random.coin_flip(),
            mean=[v * 255 for v in fl.IMAGENET_MEAN], std=[v * 255 for v in fl.IMAGENET_STD])
        return images, labels

    pipe = train()
    pipe.build()
    return DALIGenericIterator(pipe, ["images", "labels"], reader_name="reader",
                               last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True)


def epoch_native(it):
    return sum(len(batch[0]["labels"]) for batch in it)


def epoch_fastload(loader):
    return sum(len(labels) for _, labels in loader)


def test_dali_native_readers_epoch(benchmark, photo_dir):
    it = native_loader(photo_dir)
    epoch_native(it)
    n = benchmark.pedantic(epoch_native, args=(it,), rounds=5, iterations=1)
    benchmark.extra_info.update(images=n, threads=THREADS, gpu=GPU)


@pytest.mark.parametrize("backend", ["dali", "dali-native"])
def test_fastload_dali_epoch(benchmark, photo_dir, backend):
    """fastload's DALI backend (fastload's order and crops) and the dali-native opt-in (DALI's)."""
    pipeline = fl.presets.imagenet_train(224, erasing=0)
    with fl.loader(photo_dir, pipeline, BATCH, backend=backend, num_workers=THREADS,
                   shuffle=True) as loader:
        epoch_fastload(loader)
        n = benchmark.pedantic(epoch_fastload, args=(loader,), rounds=5, iterations=1)
    benchmark.extra_info.update(images=n, threads=THREADS, gpu=GPU)
