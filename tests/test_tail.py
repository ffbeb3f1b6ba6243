"""The device tail: fused normalize and batched erasing at exactly the drawn rectangles."""

import numpy as np
import torch

import fastload as fl
from fastload.backends.tail import DeviceTail
from fastload.batch import HostBatch


def host_batch(erase, seed=0, epoch=0):
    images = torch.full((3, 3, 6, 8), 51, dtype=torch.uint8)
    count = len(images)
    index = np.arange(count)
    return HostBatch(images, index, index, index, np.zeros(count, dtype=bool),
                     np.array(erase, dtype=np.int32), seed, epoch)


def test_normalize_then_erase_exact_rectangles():
    pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop((6, 8)), fl.Normalize(mean=(0.2, 0.2, 0.2), std=(0.5, 0.5, 0.5)),
                           fl.RandomErasing(value=(7, 8, 9)))
    tail = DeviceTail(pipeline, torch.device("cpu"))
    batch = tail(host_batch([[1, 2, 3, 4], [0, 0, 0, 0], [5, 7, 1, 1]]))
    images = batch.images
    assert images.shape == (3, 3, 6, 8) and images.is_contiguous()
    expect = torch.full((3, 3, 6, 8), (51 / 255 - 0.2) / 0.5)
    for c, v in enumerate((7.0, 8.0, 9.0)):
        expect[0, c, 1:4, 2:6] = v
        expect[2, c, 5, 7] = v
    assert torch.allclose(images, expect, atol=1e-6)


def test_random_value_noise_is_seeded_by_epoch_and_position():
    pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop((6, 8)), fl.Normalize(), fl.RandomErasing(value="random"))
    tail = DeviceTail(pipeline, torch.device("cpu"))
    erase = [[0, 0, 6, 8], [0, 0, 0, 0], [2, 2, 2, 2]]
    a = tail(host_batch(erase, seed=3, epoch=1)).images
    b = tail(host_batch(erase, seed=3, epoch=1)).images
    c = tail(host_batch(erase, seed=3, epoch=2)).images
    d = tail(host_batch(erase, seed=4, epoch=1)).images
    assert not torch.equal(a, d)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[1], c[1])  # not erased: the plain normalized value
    assert a[0].std() > 0.5 and a[2, :, 2:4, 2:4].std() > 0.1


def test_uint8_pipeline_passes_pixels_through_channels_first():
    tail = DeviceTail(fl.Pipeline(fl.Decode(), fl.CenterCrop((6, 8))), torch.device("cpu"))
    host = host_batch([[0, 0, 0, 0]] * 3)
    host.images[0, :, 1, 2] = torch.tensor([1, 2, 3], dtype=torch.uint8)
    out = tail(host).images
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 6, 8)
    assert out[0, :, 1, 2].tolist() == [1, 2, 3]


def test_c_kernel_and_numpy_give_the_same_bits(monkeypatch):
    """fastload._kernels.normalize_erase (one pass) == numpy multiply, add and indexed fill."""
    from fastload.backends import tail as tail_module

    if tail_module.normalize_erase is None:
        import pytest

        pytest.skip("fastload._kernels not built")
    pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop((20, 24)), fl.Normalize(),
                           fl.RandomErasing(value=(0.5, -1.0, 2.0)))
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (5, 3, 20, 24), dtype=np.uint8))
    erase = np.array([[0, 0, 20, 24], [0, 0, 0, 0], [3, 4, 5, 6], [19, 23, 1, 1], [0, 0, 0, 0]], np.int32)
    host = HostBatch(images, np.arange(5), np.arange(5), np.arange(5), np.zeros(5, dtype=bool), erase, 0, 0)
    fused = DeviceTail(pipeline, torch.device("cpu"))(host).images.clone()
    monkeypatch.setattr(tail_module, "normalize_erase", None)
    plain = DeviceTail(pipeline, torch.device("cpu"))(host).images
    assert torch.equal(fused, plain)
    assert fused[2, 1, 3:8, 4:10].eq(-1.0).all() and not fused[1].eq(-1.0).any()
