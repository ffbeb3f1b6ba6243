"""fastload.loader on the torch backend: pixels, labels, order, determinism, resume, errors."""

import numpy as np
import pytest
import torch
from PIL import Image

import fastload as fl
from conftest import decode_index, file_index, index_colour

UINT8 = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(16), fl.RandomFlip())


def epoch_batches(loader):
    return [(b.images.clone(), b.labels.clone(), b.indices.clone(), b.padded.clone()) for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_batch_holds_the_samples_it_names(jpeg_folder, workers):
    with fl.loader(jpeg_folder, UINT8, batch_size=8, num_workers=workers, seed=4, shuffle=True,
                   last_batch="pad") as ld:
        src = ld.source
        assert len(ld) == 5
        batches = list(ld)
    real = []
    for batch in batches:
        assert batch.images.shape == (8, 3, 16, 16) and batch.images.dtype == torch.uint8
        assert batch.labels.dtype == torch.int64
        for img, label, index, pad in zip(batch.images, batch.labels, batch.indices, batch.padded):
            i = file_index(src.path(int(index)))
            assert decode_index(img.numpy()) == i
            assert int(label) == i % 3
            if not pad:
                real.append(int(index))
    assert sorted(real) == list(range(37))
    assert [int(b.padded.sum()) for b in batches] == [0, 0, 0, 0, 3]


def test_same_seed_same_batches_whatever_num_workers(jpeg_folder):
    pipeline = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(24, scale=(0.2, 1.0)), fl.RandomFlip(),
                           fl.Normalize(), fl.RandomErasing(p=0.5, value="random"))
    runs = []
    for workers in (0, 1, 2):
        with fl.loader(jpeg_folder, pipeline, batch_size=6, num_workers=workers, seed=11) as ld:
            runs.append(epoch_batches(ld))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            for x, y in zip(a, b):
                assert torch.equal(x, y)
    with fl.loader(jpeg_folder, pipeline, batch_size=6, num_workers=0, seed=12) as ld:
        assert not torch.equal(epoch_batches(ld)[0][0], runs[0][0][0])


def test_epochs_reshuffle_and_set_epoch_replays(jpeg_folder):
    with fl.loader(jpeg_folder, UINT8, batch_size=8, num_workers=0, seed=1, shuffle=True) as ld:
        first = torch.cat([b.indices for b in ld])
        assert ld.epoch == 1  # finishing an epoch moves on, as DataLoader(shuffle=True) does
        second = torch.cat([b.indices for b in ld])
        assert not torch.equal(first, second)
        ld.set_epoch(0)
        assert torch.equal(torch.cat([b.indices for b in ld]), first)


def test_shuffle_false_reads_in_order(jpeg_folder):
    with fl.loader(jpeg_folder, UINT8, batch_size=10, num_workers=0, shuffle=False,
                   last_batch="partial") as ld:
        indices = [b.indices.tolist() for b in ld]
    assert indices == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30)), list(range(30, 37))]


@pytest.mark.parametrize("workers", [0, 2])
def test_mid_epoch_resume_gives_exactly_the_remaining_batches(jpeg_folder, workers):
    pipeline = fl.presets.imagenet_train(16)
    with fl.loader(jpeg_folder, pipeline, batch_size=4, num_workers=workers, seed=3,
                   shuffle=True) as ld:
        ld.set_epoch(2)
        full = epoch_batches(ld)
    with fl.loader(jpeg_folder, pipeline, batch_size=4, num_workers=workers, seed=3,
                   shuffle=True) as ld:
        ld.set_epoch(2)
        it = iter(ld)
        head = [next(it) for _ in range(4)]
        state = ld.state_dict()
    assert state == {"version": 1, "seed": 3, "epoch": 2, "position": 16, "samples": 37, "shuffle": True,
                     "shard_window": None, "sampling": None}
    with fl.loader(jpeg_folder, pipeline, batch_size=4, num_workers=workers, seed=0,
                   shuffle=True) as ld:
        ld.load_state_dict(state)
        ld.set_epoch(2)  # the usual loop calls this; it must keep the position
        rest = epoch_batches(ld)
        assert ld.state_dict()["epoch"] == 3
    assert len(head) + len(rest) == len(full) == 10
    for a, b in zip(full[4:], rest):
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_explicit_dist_shards_and_pads(jpeg_folder):
    got = []
    for rank in range(3):
        with fl.loader(jpeg_folder, UINT8, batch_size=4, num_workers=0, dist=(rank, 3)) as ld:
            assert len(ld) == 4
            batches = list(ld)
            assert len(batches) == 4
            got.append(torch.cat([b.indices[~b.padded] for b in batches]))
    allreal = torch.cat(got).tolist()
    assert sorted(allreal) == list(range(37))


def test_eval_pipeline_matches_resize_then_center_crop(photo_folder):
    pipeline = fl.Pipeline(fl.Decode(), fl.Resize(64), fl.CenterCrop(56))
    with fl.loader(photo_folder, pipeline, batch_size=8, num_workers=0, shuffle=False) as ld:
        batch = next(iter(ld))
        src = ld.source
    for img, index in zip(batch.images, batch.indices):
        ref = Image.open(src.path(int(index))).convert("RGB")
        w, h = ref.size
        nh, nw = (64, int(64 * w / h)) if h <= w else (int(64 * h / w), 64)
        ref = ref.resize((nw, nh), Image.BILINEAR)
        top, left = int(round((nh - 56) / 2)), int(round((nw - 56) / 2))
        ref = np.asarray(ref)[top:top + 56, left:left + 56]
        diff = np.abs(img.permute(1, 2, 0).numpy().astype(int) - ref.astype(int))
        assert diff.mean() < 0.25 and diff.max() <= 4


def test_random_resized_crop_matches_crop_then_resize(photo_folder):
    """The planned box, cut and resized by PIL in full resolution, is what the loader returns
    (up to the small error of JPEG DCT-domain downscaling when the box is >= 2x the output)."""
    from fastload.ops.draws import sample_rng
    from fastload.ops.geometry import plan_sample

    pipeline = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(64, scale=(0.3, 1.0)), fl.RandomFlip())
    with fl.loader(photo_folder, pipeline, batch_size=12, num_workers=0, seed=5) as ld:
        batch = next(iter(ld))
        src = ld.source
    positions = range(0, 12)  # rank 0 of 1: batch 0 holds positions 0..11
    reduced = 0
    for img, index, position in zip(batch.images, batch.indices, positions):
        ref = Image.open(src.path(int(index))).convert("RGB")
        plan = plan_sample(pipeline, ref.size[1], ref.size[0], sample_rng(5, 0, position))
        top, left, h, w = plan.box
        ref = np.asarray(ref.resize((64, 64), Image.BILINEAR, box=(left, top, left + w, top + h)))
        if plan.flip:
            ref = ref[:, ::-1]
        reduced += plan.scale >= 2
        diff = np.abs(img.permute(1, 2, 0).numpy().astype(int) - ref.astype(int))
        # torch's antialiased bilinear is within ~0.05 levels of PIL's at full resolution
        assert diff.mean() < (5.0 if plan.scale >= 2 else 0.25)  # DCT scaling: a few levels
    assert 0 < reduced < 12  # both paths were exercised


def test_normalize_and_dtypes(png_folder):
    for dtype, torch_dtype, tol in (("float32", torch.float32, 1e-5), ("bfloat16", torch.bfloat16, 2e-2)):
        pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop(8), fl.Normalize(dtype=dtype))
        with fl.loader(png_folder, pipeline, batch_size=5, num_workers=0, shuffle=False) as ld:
            images, _ = next(iter(ld))
            src = ld.source
        assert images.shape == (5, 3, 8, 8) and images.dtype == torch_dtype
        for img, k in zip(images, range(5)):
            colour = np.array(index_colour(file_index(src.path(k))), dtype=np.float64)
            expect = (colour / 255 - np.array(fl.IMAGENET_MEAN)) / np.array(fl.IMAGENET_STD)
            got = img.float().mean(dim=(1, 2)).numpy()
            assert np.allclose(got, expect, atol=tol * max(1, np.abs(expect).max()))


def test_center_crop_larger_than_the_image_pads_with_zeros(png_folder):
    pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop(100))
    with fl.loader(png_folder, pipeline, batch_size=1, num_workers=0, shuffle=False) as ld:
        img = next(iter(ld)).images[0]
        w, h = Image.open(ld.source.path(0)).size
    assert img[:, 0, 0].tolist() == [0, 0, 0]
    top, left = (100 - h) // 2, (100 - w) // 2
    inside = img[:, top + 1:top + h - 1, left + 1:left + w - 1]
    assert inside.float().std(dim=(1, 2)).max() == 0 and inside[:, 0, 0].sum() > 0


def test_flip_mirrors_the_image(tmp_path):
    (tmp_path / "c").mkdir()
    arr = np.zeros((20, 30, 3), np.uint8)
    arr[:, :10] = 255
    Image.fromarray(arr).save(tmp_path / "c" / "left.png")
    for p, white_left in ((0.0, True), (1.0, False)):
        pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop((20, 30)), fl.RandomFlip(p))
        with fl.loader(tmp_path, pipeline, batch_size=1, num_workers=0) as ld:
            img = next(iter(ld)).images[0]
        assert (img[:, :, 0].min() == 255) == white_left and (img[:, :, -1].min() == 255) != white_left


def test_random_erasing_rate_area_and_values(png_folder):
    erase = fl.RandomErasing(p=0.4, scale=(0.05, 0.3), value=100.0)
    pipeline = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(32), fl.Normalize(), erase)
    fractions = []
    with fl.loader(png_folder, pipeline, batch_size=23, num_workers=0, seed=2) as ld:
        for _ in range(12):
            for images, _ in ld:
                fractions.extend((images == 100.0).all(dim=1).float().mean(dim=(1, 2)).tolist())
    fractions = np.array(fractions)
    erased = fractions[fractions > 0]
    assert abs(len(erased) / len(fractions) - 0.4) < 0.08
    assert erased.min() >= 0.05 * 0.85 and erased.max() <= 0.3 * 1.15
    random = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(64), fl.Normalize(),
                         fl.RandomErasing(p=1.0, scale=(0.2, 0.3), value="random"))
    with fl.loader(png_folder, random, batch_size=23, num_workers=0) as ld:
        images, _ = next(iter(ld))
    solid = images[:, 0].flatten(1).median(dim=1).values.view(-1, 1, 1)  # erasing covers < 1/2
    noisy = images[:, 0] != solid
    fraction = noisy.float().mean(dim=(1, 2))
    assert fraction.min() >= 0.2 * 0.85 and fraction.max() <= 0.3 * 1.15
    values = images.permute(0, 2, 3, 1)[noisy]
    assert abs(values.mean().item()) < 0.05 and abs(values.std().item() - 1) < 0.05


def test_bad_sample_error_names_the_file_and_index(tmp_path):
    (tmp_path / "c").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "c" / "a.jpg")
    (tmp_path / "c" / "b.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    with fl.loader(tmp_path, UINT8, batch_size=2, num_workers=0) as ld:
        with pytest.raises(fl.DecodeError, match=r"b\.jpg \(sample 1\): cannot decode image"):
            list(ld)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size=0"),
    ({"backend": "tpu"}, "backend='tpu'"),
    ({"last_batch": "keep"}, "last_batch='keep'"),
    ({"num_workers": -1}, "num_workers=-1"),
    ({"seed": -5}, "seed=-5"),
    ({"device": "gpu0"}, "device='gpu0'"),
    ({"dist": (2, 2)}, r"rank=2 is out of range for world_size=2 \(ranks are 0..1\)"),
    ({"dist": (0, 0)}, "world_size=0 must be >= 1"),
    ({"device": "meta"}, "device='meta': fastload puts batches on 'cpu' or 'cuda"),
    ({"device": "cuda"}, "no CUDA device is usable here"),
    ({"drop_last": True, "last_batch": "pad"}, "drop_last=True and last_batch='pad' disagree"),
    ({"timeout": -1}, "timeout=-1"),
    ({"sampler": object()}, "sampler= is a DataLoader keyword.*DistributedSampler is not needed"),
    ({"collate_fn": list}, "collate_fn= .*stacked as one"),
    ({"worker_init_fn": print}, "worker_init_fn= .*changes nothing"),
    ({"batch_sampler": object()}, "batch_sampler= .*batch_size="),
    ({"seed": 1, "generator": torch.Generator()}, "seed= or generator=, not both"),
    ({"colour": 1}, "unexpected keyword colour="),
    ({"pipeline": "imagenet"}, "must be a fastload.Pipeline"),
])
def test_bad_arguments_are_named(jpeg_folder, kwargs, message):
    args = {"batch_size": 4, "pipeline": UINT8, **kwargs}
    with pytest.raises(fl.SpecError, match=message):
        fl.loader(jpeg_folder, args.pop("pipeline"), args.pop("batch_size"), **args)


def test_bad_state_is_rejected(jpeg_folder, png_folder):
    with fl.loader(jpeg_folder, UINT8, batch_size=4, num_workers=0) as ld:
        state = ld.state_dict()
    with fl.loader(png_folder, UINT8, batch_size=4, num_workers=0) as ld:
        with pytest.raises(fl.SpecError, match="dataset of 37 samples, this source has 23"):
            ld.load_state_dict(state)
        with pytest.raises(fl.SpecError, match="version 1"):
            ld.load_state_dict({"epoch": 3})


def test_closed_loader_refuses_to_iterate(jpeg_folder):
    ld = fl.loader(jpeg_folder, UINT8, batch_size=4, num_workers=1)
    next(iter(ld))
    ld.close()
    ld.close()
    with pytest.raises(RuntimeError, match="closed"):
        next(iter(ld))


def test_batch_pickles_and_unpacks(jpeg_folder):
    import pickle

    with fl.loader(jpeg_folder, UINT8, batch_size=4, num_workers=0) as ld:
        batch = next(iter(ld))
    images, labels = batch
    again = pickle.loads(pickle.dumps(batch))
    assert torch.equal(again.images, images) and torch.equal(again.indices, batch.indices)


def test_spawned_workers_give_the_same_batches(jpeg_folder):
    pipeline = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(16), fl.Normalize(),
                           fl.RandomErasing(p=1.0, value="random"))
    runs = []
    for context in ("spawn", None):
        with fl.loader(jpeg_folder, pipeline, batch_size=8, num_workers=1, seed=2,
                       multiprocessing_context=context) as ld:
            runs.append(epoch_batches(ld))
    for a, b in zip(*runs):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
