"""A seeded corpus of hostile images (forged headers, truncations, flipped bytes, extreme
shapes) through every pipeline on both backends: only fastload's errors, naming the sample;
``on_error="skip"`` skips exactly the same samples on both backends; nothing crashes."""

import io
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import fastload as fl
from fastload.backends import dali_available

BACKENDS = ["torch", pytest.param("dali", marks=pytest.mark.skipif(
    not dali_available(), reason="DALI not installed: pip install 'fastload-images[dali]'"))]
PIPES = {
    "eval": fl.Pipeline(fl.Decode(), fl.Resize(32), fl.CenterCrop(32), fl.Normalize()),
    "train": fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(32), fl.RandomFlip(), fl.Normalize(),
                         fl.RandomErasing(0.5)),
    "recipe": fl.presets.torchvision_v2(32, num_classes=2),
}


def jpeg(width, height, seed, **save):
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=80, **save)
    return buf.getvalue()


def png(width, height, seed):
    pixels = (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def with_size(data, width, height):
    """The same JPEG with its frame header (SOF) claiming another size."""
    at = next(i for i in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if i >= 0)
    return data[:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]


def corpus(seed, mutants):
    """(name, bytes) pairs: valid images of extreme shapes, forged sizes, truncations, a PNG
    without width or end, and JPEGs with 1-5 random bytes changed."""
    rng = np.random.default_rng(seed)
    base, progressive, small = jpeg(64, 48, seed), jpeg(64, 48, seed + 1, progressive=True), \
        png(30, 20, seed)
    items = [("valid", base), ("valid progressive", progressive), ("valid png", small),
             ("1x900", jpeg(1, 900, seed)), ("900x1", jpeg(900, 1, seed))]
    for width, height in [(0, 48), (64, 0), (65535, 65535), (64, 480), (640, 48),
                          (9400, 9400), (1, 1)]:
        items.append((f"claims {width}x{height}", with_size(base, width, height)))
        items.append((f"progressive claims {width}x{height}",
                      with_size(progressive, width, height)))
    items += [(f"cut at {cut}", base[:cut]) for cut in (2, 20, 200, len(base) // 2, len(base) - 2)]
    items += [("png width 0", small[:16] + struct.pack(">I", 0) + small[20:]),
              ("png cut", small[:len(small) // 2])]
    for k in range(mutants):
        buf = bytearray(base if k % 2 else progressive)
        for _ in range(int(rng.integers(1, 6))):
            buf[int(rng.integers(2, len(buf)))] = int(rng.integers(256))
        items.append((f"mutant {k}", bytes(buf)))
    return items


class Corpus:
    """A map-style dataset of (bytes, label), as a user's own Dataset would be."""

    classes = ["a", "b"]

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index][1], index % 2


def run_skipping(items, pipe, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skip warnings, one per file
        with fl.loader(Corpus(items), pipe, 8, backend=backend, num_workers=0,
                       on_error="skip", seed=3) as ld:
            batches = [(b.images, b.indices) for b in ld]
            return batches, sorted(ld.skipped_files)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_hostile_image_loads_or_raises_a_named_fastload_error(backend):
    """One loader per image would cost a DALI pipeline each; the torch backend checks every
    image alone, DALI (which shares the same checks before decoding) a sample of them."""
    items = corpus(0, mutants=24)
    chosen = items if backend == "torch" else items[::6]
    for k, (name, data) in enumerate(chosen):
        try:
            with fl.loader(Corpus([(name, data)]), PIPES["eval"], 1, backend=backend,
                           num_workers=0) as ld:
                images, _ = next(iter(ld))
            assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all(), name
        except fl.FastloadError as exc:
            assert "Corpus[0]" in str(exc), (name, str(exc))
    valid = [name for name, _ in items[:5]]
    assert valid == ["valid", "valid progressive", "valid png", "1x900", "900x1"]


@pytest.mark.parametrize("pipe", list(PIPES))
def test_skip_drops_the_same_samples_on_both_backends_and_completes(pipe):
    items = corpus(1, mutants=24)
    torch_batches, torch_skipped = run_skipping(items, PIPES[pipe], "torch")
    assert 20 <= len(torch_skipped) < len(items) - 10  # the forged and cut ones at least
    forged = {f"Corpus[{k}]" for k, (name, _) in enumerate(items)
              if name.startswith(("claims 0x", "claims 64x0", "claims 9400", "cut at", "png"))}
    assert forged <= set(torch_skipped)
    for images, _ in torch_batches:
        assert torch.isfinite(images).all()
    if not dali_available():
        return
    dali_batches, dali_skipped = run_skipping(items, PIPES[pipe], "dali")
    assert dali_skipped == torch_skipped
    for (_, a), (_, b) in zip(torch_batches, dali_batches):
        assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_longer_mutational_run_raises_nothing_but_skips(backend):
    for seed in range(4):
        items = corpus(100 + seed, mutants=150)
        batches, skipped = run_skipping(items, PIPES["train"], backend)
        assert sum(len(i) for _, i in batches) == len(items) and skipped
