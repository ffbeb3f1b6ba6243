"""Per-op micro benchmarks: decode, crop+resize, batch normalize+erase."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import fastload as fl
from fastload.backends.tail import Tail
from fastload.backends.torch.producer import render_batch
from fastload.batch import BatchTask
from fastload.ops.draws import sample_rng
from fastload.ops.geometry import plan_sample
from fastload.image_info import read_header
from fastload.backends.torch.imaging import render


@pytest.fixture(scope="module")
def encoded(photo_dir):
    source = fl.FolderSource(photo_dir)
    return [source.read(i)[0] for i in range(min(64, len(source)))]


def test_decode_full(benchmark, encoded):
    """JPEG decode alone (libjpeg-turbo through PIL), whole images."""
    benchmark(lambda: [Image.open(io.BytesIO(d)).load() for d in encoded])
    benchmark.extra_info["images"] = len(encoded)


def test_random_resized_crop_224(benchmark, encoded):
    """Decode + RandomResizedCrop(224) + flip, as a torch-backend worker does it."""
    pipeline = fl.presets.imagenet_train(224)
    out = torch.empty((3, 224, 224), dtype=torch.uint8)

    def run():
        for i, d in enumerate(encoded):
            width, height = read_header(d, "bench")
            plan = plan_sample(pipeline, height, width, sample_rng(0, 0, i))
            render(d, "bench", plan, (height, width), out)

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
    tail = Tail(pipeline, torch.device("cpu"))
    out = tail(host)
    benchmark(lambda: tail(host))
    benchmark.extra_info["images"] = len(encoded)
    assert out.images.shape == (len(encoded), 3, 224, 224)


@pytest.fixture(scope="module")
def crop_boxes(encoded):
    """Each image's RandomResizedCrop(224) box (top, left, height, width), from its header."""
    from fastload.backends.torch.imaging import image_size

    pipeline = fl.presets.imagenet_train(224)
    boxes = []
    for i, d in enumerate(encoded):
        width, height = image_size(d, "bench")
        boxes.append(tuple(int(v) for v in plan_sample(pipeline, height, width, sample_rng(0, 0, i)).box))
    return boxes


@pytest.mark.parametrize("how", ["whole-simplejpeg", "region-fastload"])
def test_decode_crop_region(benchmark, encoded, crop_boxes, how):
    """Decode what a RandomResizedCrop(224) needs: the whole JPEG, or only its box."""
    import simplejpeg

    from fastload.backends.torch import imaging

    if how == "region-fastload" and imaging._jpeg is None:
        pytest.skip("fastload._jpeg not built")
    if how == "whole-simplejpeg":
        run = lambda: [simplejpeg.decode_jpeg(d) for d in encoded]  # noqa: E731
    else:
        run = lambda: [imaging._jpeg.decode_region(d, 1, *box, 4)  # noqa: E731
                       for d, box in zip(encoded, crop_boxes)]
    benchmark(run)
    benchmark.extra_info["images"] = len(encoded)


@pytest.mark.parametrize("how", ["torch-interpolate", "fastload-kernel"])
def test_resample_crop_224(benchmark, encoded, crop_boxes, how):
    """Resize each decoded RandomResizedCrop box to 224x224 into a channels-first batch slot."""
    import simplejpeg
    import torch.nn.functional as F

    from fastload.backends.torch import imaging

    if how == "fastload-kernel" and imaging._resample is None:
        pytest.skip("fastload._kernels not built")
    space = "RGB" if how == "torch-interpolate" else "RGBX"  # what each is fed in the backend
    crops = [np.ascontiguousarray(simplejpeg.decode_jpeg(d, colorspace=space)[t:t + h, l:l + w])
             for d, (t, l, h, w) in zip(encoded, crop_boxes)]
    out = torch.empty((3, 224, 224), dtype=torch.uint8)

    def with_torch():
        for c in crops:
            x = torch.from_numpy(c).permute(2, 0, 1)[None]
            out.copy_(F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)[0])

    def with_kernel():
        for c in crops:
            imaging._resample(c, c.shape[0], c.shape[1], 4, 224, 224, 0, 0, out.numpy(), 224, 224, False)

    benchmark(with_torch if how == "torch-interpolate" else with_kernel)
    benchmark.extra_info["images"] = len(crops)


@pytest.mark.parametrize("kind", ["Mixup", "CutMix"])
def test_mixing_batch_256(benchmark, kind):
    """Mixup / CutMix on a finished float32 batch of 256 x 3 x 224 x 224 (CPU, one thread):
    images in place plus the (256, 1000) soft targets."""
    from fastload.backends.mix import mix_images, soft_labels
    from fastload.ops.mixing import partners

    op = getattr(fl, kind)(alpha=1.0, num_classes=1000, label_smoothing=0.1)
    images = torch.randn(256, 3, 224, 224)
    labels = torch.randint(0, 1000, (256,))
    perm = partners(np.zeros(256, dtype=bool))
    draws = iter(range(10**9))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def run():
            draw = op.draw(0, 0, 256 * next(draws), 224, 224)
            mix_images(images, draw, perm)
            soft_labels(labels, op, draw, perm)

        benchmark(run)
    finally:
        torch.set_num_threads(threads)


PIXEL_STEPS = {"brightness": 1.3, "contrast": 0.7, "saturation": 1.4, "hue": 0.1,
               "grayscale": None, "solarize": 128.0, "blur": (23, 23, 1.5)}


@pytest.mark.parametrize("kernel", list(PIXEL_STEPS))
def test_pixel_kernel_224(benchmark, kernel):
    """One per-sample photometric kernel on a 224x224 uint8 image (one thread, as in a worker)."""
    from fastload.backends.torch.pixel import KERNELS

    image = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark(lambda: KERNELS[kernel](image, PIXEL_STEPS[kernel]))
    finally:
        torch.set_num_threads(threads)
