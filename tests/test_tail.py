"""The device tail: fused normalize and batched erasing at exactly the drawn rectangles."""

import numpy as np
import torch

import fastload as fl
from fastload.backends.tail import Tail
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
    tail = Tail(pipeline, torch.device("cpu"))
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
    tail = Tail(pipeline, torch.device("cpu"))
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
    tail = Tail(fl.Pipeline(fl.Decode(), fl.CenterCrop((6, 8))), torch.device("cpu"))
    host = host_batch([[0, 0, 0, 0]] * 3)
    host.images[0, :, 1, 2] = torch.tensor([1, 2, 3], dtype=torch.uint8)
    out = tail(host).images
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 6, 8)
    assert out[0, :, 1, 2].tolist() == [1, 2, 3]


def test_c_kernel_and_numpy_give_the_same_bits(monkeypatch):
    """fastload._kernels.normalize_erase (one pass) == numpy multiply, add and indexed fill."""
    from fastload.backends import finisher as tail_module

    if tail_module.normalize_erase is None:
        import pytest

        pytest.skip("fastload._kernels not built")
    pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop((20, 24)), fl.Normalize(),
                           fl.RandomErasing(value=(0.5, -1.0, 2.0)))
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (5, 3, 20, 24), dtype=np.uint8))
    erase = np.array([[0, 0, 20, 24], [0, 0, 0, 0], [3, 4, 5, 6], [19, 23, 1, 1], [0, 0, 0, 0]], np.int32)
    host = HostBatch(images, np.arange(5), np.arange(5), np.arange(5), np.zeros(5, dtype=bool), erase, 0, 0)
    fused = Tail(pipeline, torch.device("cpu"))(host).images.clone()
    monkeypatch.setattr(tail_module, "normalize_erase", None)
    plain = Tail(pipeline, torch.device("cpu"))(host).images
    assert torch.equal(fused, plain)
    assert fused[2, 1, 3:8, 4:10].eq(-1.0).all() and not fused[1].eq(-1.0).any()


def _recipe_host(count=6, seed=0):
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (count, 3, 20, 24), dtype=np.uint8))
    erase = np.array([[0, 0, 20, 24], [0, 0, 0, 0], [3, 4, 5, 6], [19, 23, 1, 1], [0, 0, 0, 0],
                      [2, 2, 9, 9]][:count], np.int32)
    index = np.arange(count)
    return HostBatch(images, index, index, index, np.zeros(count, dtype=bool), erase, 5, 2)


def test_cuda_finisher_arithmetic_matches_the_cpu_finisher():
    """The CUDA finisher's torch arithmetic and masks, run here on CPU tensors, give the CPU
    finisher's batch (normalize, constant erasing, CutMix): the GPU path's logic is checked
    on every machine; only the stream handling needs a device."""
    from fastload.backends.cuda_tail import CudaFinisher
    from fastload.backends.finisher import CpuFinisher

    pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop((20, 24)), fl.Normalize(),
                           fl.RandomErasing(value=(0.5, -1.0, 2.0)),
                           fl.CutMix(alpha=1.0, num_classes=10))
    host = _recipe_host()
    cpu = CpuFinisher(pipeline)(host)
    gpu_logic = CudaFinisher(pipeline, torch.device("cpu"))(host)
    assert cpu.dtype == gpu_logic.dtype == torch.float32
    assert torch.allclose(cpu, gpu_logic, atol=1e-6)
    assert cpu.eq(-1.0).any()  # erased pixels survived mixing somewhere


def test_bfloat16_is_the_float32_batch_rounded_once():
    from fastload.backends.finisher import CpuFinisher

    ops = (fl.Decode(), fl.CenterCrop((20, 24)))
    host = _recipe_host()
    full = CpuFinisher(fl.Pipeline(*ops, fl.Normalize(), fl.RandomErasing(value=0.25)))(host)
    half = CpuFinisher(fl.Pipeline(*ops, fl.Normalize(dtype="bfloat16"),
                                   fl.RandomErasing(value=0.25)))(host)
    assert half.dtype == torch.bfloat16
    assert torch.equal(half, full.to(torch.bfloat16))
    assert half[0].eq(0.25).all()  # the whole first image erased
