"""Per-op micro benchmarks: decode, crop+resize, batch normalize+erase."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import fastload as fl
from fastload.backends.tail import DeviceTail
from fastload.backends.torch_backend import render_batch
from fastload.batch import BatchTask
from fastload.draws import sample_rng
from fastload.geometry import plan_sample
from fastload.imaging import render


@pytest.fixture(scope="module")
def encoded(photo_dir):
    source = fl.FolderSource(photo_dir)
    return [source.read(i)[0] for i in range(min(64, len(source)))]


def test_decode_full(benchmark, encoded):
    """JPEG decode alone (libjpeg-turbo through PIL): the per-image floor."""
    benchmark(lambda: [Image.open(io.BytesIO(d)).load() for d in encoded])
    benchmark.extra_info["images"] = len(encoded)


def test_random_resized_crop_224(benchmark, encoded):
    """Decode + RandomResizedCrop(224) + flip, as a torch-backend worker does it."""
    pipeline = fl.presets.imagenet_train(224)
    out = torch.empty((3, 224, 224), dtype=torch.uint8)

    def run():
        for i, d in enumerate(encoded):
            rng = sample_rng(0, 0, i)
            render(d, "bench", lambda h, w: plan_sample(pipeline, h, w, rng), out)

    benchmark(run)
    benchmark.extra_info["images"] = len(encoded)


def test_resize_only_pil(benchmark, encoded):
    """The resample alone (what pillow-simd accelerates): 300x300 box -> 224x224."""
    images = [Image.open(io.BytesIO(d)).convert("RGB") for d in encoded[:16]]
    benchmark(lambda: [im.resize((224, 224), Image.BILINEAR, box=(0, 0, 300, 300)) for im in images])
    benchmark.extra_info["images"] = len(images)


@pytest.mark.parametrize("erasing", [0.0, 0.25])
def test_batch_normalize_erase(benchmark, encoded, erasing):
    """Device tail on the CPU: uint8 NCHW -> normalized float NCHW (+ erasing), batch of 64."""
    pipeline = fl.presets.imagenet_train(224, erasing=erasing)
    idx = np.arange(len(encoded), dtype=np.int64)

    class Mem:
        def __len__(self):
            return len(encoded)

        def read(self, i):
            return encoded[i], 0

        def locate(self, i):
            return str(i)

    host = render_batch(Mem(), pipeline, BatchTask(0, 0, idx, idx.copy(), np.zeros(len(idx), bool)), True)
    tail = DeviceTail(pipeline, torch.device("cpu"))
    out = tail(host)
    benchmark(lambda: tail(host))
    benchmark.extra_info["images"] = len(encoded)
    assert out.images.shape == (len(encoded), 3, 224, 224)
