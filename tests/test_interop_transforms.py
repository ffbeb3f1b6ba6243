"""``fl.from_torchvision`` and ``fl.from_timm``: real torchvision v1/v2 and timm transforms
mapped with every parameter, refused with a named reason when they cannot be, and the same
pixel statistics as torchvision's and timm's own output when sampled the same way.

torchvision and timm install only beside torch 2.14.1: the tests that need them skip with
that reason in the main venv; ``.ci/run`` runs this file again in a venv that has them."""

import math

import numpy as np
import pytest
import torch

import fastload as fl

NEEDS = "torchvision/timm install only beside torch 2.14.1 (see .ci/run's interop venv)"


def ops_of(pipeline):
    return [op.to_dict() for op in pipeline.ops]


def test_from_timm_eval_and_train_without_timm():
    ev = fl.from_timm(input_size=(3, 224, 224), crop_pct=0.9, mean=(0.5, 0.5, 0.5),
                      std=(0.5, 0.5, 0.5))
    assert ops_of(ev) == ops_of(fl.Pipeline(fl.Decode(), fl.Resize(math.floor(224 / 0.9)),
                                            fl.CenterCrop(224),
                                            fl.Normalize((0.5,) * 3, (0.5,) * 3)))
    train = fl.from_timm(224, is_training=True, auto_augment="rand-m9-mstd0.5-inc1",
                         re_prob=0.25, re_mode="pixel", scale=(0.35, 1.0))
    assert ops_of(train) == ops_of(fl.Pipeline(
        fl.Decode(), fl.RandomResizedCrop(224, scale=(0.35, 1.0)), fl.RandomFlip(0.5),
        fl.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=11, magnitude_std=0.5, p=0.5),
        fl.Normalize(), fl.RandomErasing(p=0.25, scale=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3),
                                         value="random")))
    jitter = fl.from_timm(160, is_training=True, color_jitter=0.3, hflip=0.0)
    assert [type(op).__name__ for op in jitter.ops] == ["Decode", "RandomResizedCrop",
                                                        "ColorJitter", "Normalize"]


@pytest.mark.parametrize("kwargs, message", [
    ({"interpolation": "bicubic"}, "interpolation='bicubic'; fastload resizes with antialiased "
                                   "bilinear only"),
    ({"is_training": True, "auto_augment": "original"}, "AutoAugment and AugMix policies"),
    ({"is_training": True, "re_prob": 0.2, "re_count": 2}, "re_count=2; fastload erases one"),
    ({"is_training": True, "re_prob": 0.2, "re_mode": "rand"}, "re_mode='rand'"),
    ({"is_training": True, "vflip": 0.5}, "vflip=0.5; fastload flips horizontally only"),
    ({"separate": True}, r"\['separate'\] not supported"),
])
def test_from_timm_refuses_what_it_cannot_map(kwargs, message):
    with pytest.raises(fl.SpecError, match=message):
        fl.from_timm(**kwargs)


def test_from_timm_accepts_bilinear_when_asked():
    assert fl.from_timm(interpolation="bicubic", accept_bilinear=True).ops[1] == fl.Resize(256)


@pytest.fixture(scope="module")
def tv():
    module = pytest.importorskip("torchvision", reason=NEEDS)
    import torchvision.transforms.v2  # noqa: F401  (a submodule torchvision does not import)

    return module


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_mapped_torchvision_transform_carries_its_parameters(tv, version):
    T = tv.transforms if version == "v1" else tv.transforms.v2
    tail = [T.ToTensor()] if version == "v1" else [T.ToImage(), T.ToDtype(torch.float32, scale=True)]
    train = T.Compose([T.RandomResizedCrop(176, scale=(0.2, 0.9), ratio=(0.5, 2.0)),
                       T.RandomHorizontalFlip(0.3), T.ColorJitter(0.4, (0.6, 1.3), 0.2, 0.1),
                       T.RandomGrayscale(0.2), T.GaussianBlur(5, sigma=(0.2, 1.5)),
                       T.RandomSolarize(100, p=0.3), T.TrivialAugmentWide(num_magnitude_bins=21),
                       T.RandAugment(num_ops=3, magnitude=7), *tail,
                       T.Normalize((0.4, 0.5, 0.6), (0.2, 0.3, 0.25)),
                       T.RandomErasing(p=0.3, scale=(0.05, 0.2), ratio=(0.5, 2.0), value=0)])
    got = fl.from_torchvision(train)
    assert ops_of(got) == ops_of(fl.Pipeline(
        fl.Decode(), fl.RandomResizedCrop(176, scale=(0.2, 0.9), ratio=(0.5, 2.0)),
        fl.RandomFlip(0.3), fl.ColorJitter((0.6, 1.4), (0.6, 1.3), (0.8, 1.2), (-0.1, 0.1)),
        fl.RandomGrayscale(0.2), fl.GaussianBlur(5, sigma=(0.2, 1.5)),
        fl.RandomSolarize(threshold=100, p=0.3), fl.TrivialAugmentWide(num_magnitude_bins=21),
        fl.RandAugment(num_ops=3, magnitude=7), fl.Normalize((0.4, 0.5, 0.6), (0.2, 0.3, 0.25)),
        fl.RandomErasing(p=0.3, scale=(0.05, 0.2), ratio=(0.5, 2.0), value=0.0)))
    ev = fl.from_torchvision([T.Resize(232), T.CenterCrop(224), *tail, T.Normalize((0.5,) * 3,
                                                                                   (0.25,) * 3)])
    assert ops_of(ev) == ops_of(fl.Pipeline(fl.Decode(), fl.Resize(232), fl.CenterCrop(224),
                                            fl.Normalize((0.5,) * 3, (0.25,) * 3)))
    bounded = fl.from_torchvision([T.Resize(64, max_size=80), T.CenterCrop(64), *tail])
    assert bounded.ops[1] == fl.Resize(64, max_size=80)
    noise = fl.from_torchvision([T.RandomResizedCrop(32), *tail, T.Normalize((0.5,) * 3, (0.5,) * 3),
                                 T.RandomErasing(value="random")])
    assert noise.erasing.value == "random"
    after = fl.from_torchvision([T.CenterCrop(32), *tail, T.RandomSolarize(0.5)])
    assert after.pixel[0].threshold == 127.5  # after the float conversion: 0-1 units


def test_resize_sizes_are_torchvisions(tv):
    """Geometry.resized gives the size torchvision v2's Resize gives, with and without max_size
    (and size=None: the longer side set), over many image shapes."""
    F = tv.transforms.v2.functional
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = (int(v) for v in rng.integers(1, 400, 2))
        image = torch.zeros(1, height, width, dtype=torch.uint8)
        size = int(rng.integers(8, 120))
        for resize in (fl.Resize(size), fl.Resize(size, max_size=size + int(rng.integers(1, 60))),
                       fl.Resize(None, max_size=size)):
            geometry = fl.Pipeline(fl.Decode(), resize, fl.CenterCrop(8)).geometry
            try:
                expected = tuple(F.resize(image, None if resize.size is None else [resize.size],
                                          max_size=resize.max_size).shape[-2:])
            except RuntimeError:  # torchvision fails where the shorter side floors to 0
                expected = tuple(max(1, v) for v in geometry.resized(height, width))
                assert min(geometry.resized(height, width)) == 1
            assert geometry.resized(height, width) == expected, (height, width, resize)


@pytest.mark.parametrize("build, message", [
    (lambda T: [T.RandomResizedCrop(32, interpolation=T.InterpolationMode.BICUBIC)],
     r"item 0 \(RandomResizedCrop\): interpolation=bicubic; fastload resizes with antialiased "
     "bilinear only"),
    (lambda T: [T.CenterCrop(32), T.RandomVerticalFlip()],
     r"item 1 \(RandomVerticalFlip\): has no fastload equivalent; remove it, or run it as an "
     r"fl.Lambda"),
    (lambda T: [T.CenterCrop(32), T.AutoAugment()], r"item 1 \(AutoAugment\): fastload has no "
                                                    "AutoAugment policy"),
    (lambda T: [T.CenterCrop(32), T.Normalize((0.5,) * 3, (0.5,) * 3)],
     "Normalize before a tensor conversion"),
    (lambda T: [T.CenterCrop(32), T.TrivialAugmentWide(fill=[128, 128, 128])], "fill="),
    (lambda T: [T.ColorJitter(0.2), T.RandomResizedCrop(32)], "cannot run in this order"),
])
def test_what_cannot_be_mapped_is_named_with_its_position(tv, build, message):
    with pytest.raises(fl.SpecError, match=message):
        fl.from_torchvision(build(tv.transforms.v2))


def test_a_torchvision_transform_given_as_an_op_names_the_fastload_one(tv):
    with pytest.raises(fl.SpecError, match=r"a torchvision transform: use fl.RandomFlip; or "
                                           r"convert the whole transform with "
                                           r"fl.from_torchvision"):
        fl.Pipeline(fl.Decode(), fl.CenterCrop(8), tv.transforms.v2.RandomHorizontalFlip())


def channel_stats(batches):
    x = torch.cat([b for b in batches]).double()
    return x.mean((0, 2, 3)).numpy(), x.std((0, 2, 3)).numpy()


def reference_batches(photo_folder, transform, rounds):
    """torchvision / timm's own output: PIL images through ``transform``, seeded."""
    from PIL import Image

    src = fl.FolderSource(photo_folder, index_file=None)
    torch.manual_seed(0)
    out = []
    for _ in range(rounds):
        out.append(torch.stack([transform(Image.open(src.path(i)).convert("RGB"))
                                for i in range(len(src))]))
    return out


def fastload_batches(photo_folder, pipeline, rounds):
    with fl.loader(photo_folder, pipeline, 16, shuffle=True, num_workers=1, seed=1) as ld:
        return [b.images for _ in range(rounds) for b in ld]


def test_pixel_statistics_agree_with_torchvisions_own_output(tv, photo_folder):
    T = tv.transforms.v2
    transform = T.Compose([T.RandomResizedCrop(64), T.RandomHorizontalFlip(),
                           T.ColorJitter(0.3, 0.3, 0.3), T.ToImage(),
                           T.ToDtype(torch.float32, scale=True),
                           T.Normalize(fl.IMAGENET_MEAN, fl.IMAGENET_STD)])
    mine = channel_stats(fastload_batches(photo_folder, fl.from_torchvision(transform), 6))
    theirs = channel_stats(reference_batches(photo_folder, transform, 6))
    assert np.allclose(mine[0], theirs[0], atol=0.08), (mine, theirs)
    assert np.allclose(mine[1], theirs[1], rtol=0.08), (mine, theirs)


def test_pixel_statistics_agree_with_timms_own_output(photo_folder):
    timm_data = pytest.importorskip("timm.data", reason=NEEDS)
    for kwargs in ({"input_size": 64, "is_training": False, "crop_pct": 0.9},
                   {"input_size": 64, "is_training": True, "color_jitter": 0.2}):
        transform = timm_data.create_transform(**kwargs)
        rounds = 1 if not kwargs["is_training"] else 6
        mine = channel_stats(fastload_batches(photo_folder, fl.from_timm(**kwargs), rounds))
        theirs = channel_stats(reference_batches(photo_folder, transform, rounds))
        tolerance = 0.02 if not kwargs["is_training"] else 0.08
        assert np.allclose(mine[0], theirs[0], atol=tolerance), (kwargs, mine, theirs)
        assert np.allclose(mine[1], theirs[1], rtol=tolerance), (kwargs, mine, theirs)
