"""The DALI backend (CPU mode here; `gpu` tests use mixed decoding): parity with the torch
backend, sharding and resume through fastload's sampler, all sources, errors."""

import pytest
import torch
from PIL import Image

import fastload as fl
from fastload.tools.convert import convert

pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install 'fastload-images[dali]'")

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def batches(source, pipeline, backend, **kw):
    kw = {"batch_size": 8, "num_workers": 2, "seed": 5, **kw}
    with fl.loader(source, pipeline, kw.pop("batch_size"), backend=backend, **kw) as ld:
        assert ld.backend == backend
        return [(b.images.cpu(), b.labels.cpu(), b.indices, b.padded) for b in ld]


def test_eval_pixels_match_the_torch_backend(photo_folder):
    """Tolerance: mean |diff| < 0.5 of 1/255 (measured ~0.17): the decoders agree exactly; the
    two antialiased bilinear resamplers differ by rounding (PIL fixed point, DALI float)."""
    pipeline = fl.Pipeline(fl.Decode(), fl.Resize(64), fl.CenterCrop(56))
    a = batches(photo_folder, pipeline, "torch", shuffle=False)
    b = batches(photo_folder, pipeline, "dali", shuffle=False)
    assert len(a) == len(b) == 3
    for (xa, ya, ia, pa), (xb, yb, ib, pb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(pa, pb)
        diff = (xa.float() - xb.float()).abs()
        assert diff.mean() < 0.5 and diff.max() <= 12


@pytest.mark.parametrize("ops", [
    [fl.Resize((40, 50)), fl.CenterCrop(32)],  # an exact resize, then a crop inside it
    [fl.Resize((40, 50)), fl.CenterCrop((44, 20))],  # a crop taller than the resize: padded
    [fl.Resize((40, 50))],
])
def test_every_deterministic_geometry_matches_the_torch_backend(photo_folder, ops):
    pipeline = fl.Pipeline(fl.Decode(), *ops)
    a = batches(photo_folder, pipeline, "torch", shuffle=False)
    b = batches(photo_folder, pipeline, "dali", shuffle=False)
    for (xa, _, ia, _), (xb, _, ib, _) in zip(a, b):
        assert torch.equal(ia, ib) and xa.shape == xb.shape
        assert (xa.float() - xb.float()).abs().mean() < 0.5


def test_train_pipeline_same_samples_boxes_flips_and_erasing(photo_folder):
    """Same seed: same sample ids, crop boxes and flips (pixels agree to resampling rounding
    where both decode at full resolution; the torch backend decodes boxes >= 2x the output at
    1/2..1/8 scale in the DCT domain, a few levels off), and the same erased rectangles."""
    from fastload.ops.draws import sample_rng
    from fastload.ops.geometry import plan_sample

    geometry = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(96), fl.RandomFlip())
    a = batches(photo_folder, geometry, "torch")
    b = batches(photo_folder, geometry, "dali")
    source = fl.FolderSource(photo_folder)
    full_res = 0
    for k, ((xa, _, ia, _), (xb, _, ib, _)) in enumerate(zip(a, b)):
        assert torch.equal(ia, ib)
        per_image = (xa.float() - xb.float()).abs().mean(dim=(1, 2, 3))
        for j, index in enumerate(ia.tolist()):
            w, h = Image.open(source.path(index)).size
            plan = plan_sample(geometry, h, w, sample_rng(5, 0, k * 8 + j))
            full_res += plan.scale < 2
            assert per_image[j] < (1.0 if plan.scale < 2 else 8.0), (index, plan)
    assert full_res >= 8
    erase = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(48), fl.Normalize(),
                        fl.RandomErasing(p=0.5, value=50.0))
    a = batches(photo_folder, erase, "torch")
    b = batches(photo_folder, erase, "dali")
    for (xa, *_), (xb, *_) in zip(a, b):
        assert torch.equal(xa == 50.0, xb == 50.0)


@pytest.mark.parametrize("kind", ["tfrecord", "lmdb", "webdataset", "parquet"])
def test_every_source_feeds_dali_identically(jpeg_folder, tmp_path, kind):
    if kind == "parquet":  # the folder's bytes in a Parquet file, read by its spawned workers
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        src = fl.FolderSource(jpeg_folder, index_file=None)
        (tmp_path / kind).mkdir()
        pq.write_table(pa.table({"image": [src.read(i)[0] for i in range(len(src))],
                                 "label": [int(y) for y in src.labels]}),
                       tmp_path / kind / "train.parquet", row_group_size=10)
    else:
        convert(jpeg_folder, tmp_path / kind, format=kind, shards=3)
    pipeline = fl.presets.imagenet_train(32)
    a = batches(jpeg_folder, pipeline, "dali")
    b = batches(tmp_path / kind, pipeline, "dali")
    for x, y in zip(a, b):
        assert all(torch.equal(u, v) for u, v in zip(x, y))


def test_sharding_resume_and_abandoned_epochs(jpeg_folder):
    pipeline = fl.presets.imagenet_train(16)
    full = batches(jpeg_folder, pipeline, "dali", batch_size=4, dist=(1, 2))
    assert len(full) == 5 and [int(p.sum()) for *_, p in full] == [0, 0, 0, 0, 2]
    with fl.loader(jpeg_folder, pipeline, 4, backend="dali", num_workers=2, seed=5, dist=(1, 2)) as ld:
        it = iter(ld)
        head = [next(it) for _ in range(2)]
        state = ld.state_dict()
        del it  # abandon the epoch with batches prefetched inside DALI
        again = list(ld)  # a new iteration starts the epoch from its beginning
    assert state["position"] == 2 * 2 * 4
    assert len(again) == 5
    for b, (x, y, i, p) in zip(head + again, full[:2] + full):
        assert torch.equal(b.images, x) and torch.equal(b.indices, i)
    with fl.loader(jpeg_folder, pipeline, 4, backend="dali", num_workers=1, dist=(1, 2)) as ld:
        ld.load_state_dict(state)
        resumed = list(ld)
        assert ld.epoch == 1
    assert [torch.equal(b.images, x) for b, (x, *_) in zip(resumed, full[2:])] == [True] * 3


def test_crop_larger_than_the_image_pads_like_the_torch_backend(png_folder):
    pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop(100))
    a = batches(png_folder, pipeline, "torch", shuffle=False)
    b = batches(png_folder, pipeline, "dali", shuffle=False)
    for (xa, *_), (xb, *_) in zip(a, b):
        assert torch.equal(xa, xb)


def test_bad_jpeg_names_the_files(tmp_path):
    (tmp_path / "c").mkdir()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / "c" / "a.jpg")
    good = (tmp_path / "c" / "a.jpg").read_bytes()
    (tmp_path / "c" / "b.jpg").write_bytes(good[:200] + b"\0" * 50)  # valid header, broken data
    pipeline = fl.Pipeline(fl.Decode(), fl.CenterCrop(16))
    with pytest.raises(fl.DecodeError, match=r"b\.jpg \(sample 1\)"):
        batches(tmp_path, pipeline, "dali", batch_size=2, shuffle=False)


def test_missing_dali_gives_the_install_command(jpeg_folder, monkeypatch):
    import fastload.backends as backends

    monkeypatch.setattr(backends, "dali_available", lambda: False)
    with pytest.raises(fl.BackendUnavailable, match="pip install 'fastload-images\\[dali\\]'"):
        fl.loader(jpeg_folder, fl.presets.imagenet_eval(32), 4, backend="dali")
    with fl.loader(jpeg_folder, fl.presets.imagenet_eval(32), 4, backend="auto", num_workers=0) as ld:
        assert ld.backend == "torch"


def test_auto_picks_torch_without_a_gpu(jpeg_folder):
    with fl.loader(jpeg_folder, fl.presets.imagenet_eval(32), 4, num_workers=0, device="cpu") as ld:
        assert ld.backend == "torch"


@pytest.mark.gpu
@gpu
def test_gpu_mixed_decode_matches_cpu_mode(photo_folder):
    pipeline = fl.presets.imagenet_train(64)
    cpu = batches(photo_folder, pipeline, "dali", device="cpu")
    on_gpu = batches(photo_folder, pipeline, "dali", device="cuda")
    for (xc, yc, ic, _), (xg, yg, ig, _) in zip(cpu, on_gpu):
        assert torch.equal(ic, ig) and torch.equal(yc, yg)
        assert (xc - xg).abs().mean() < 0.05  # nvJPEG vs libjpeg-turbo IDCT rounding


@pytest.mark.gpu
@gpu
def test_gpu_auto_picks_dali_and_lands_on_the_device(photo_folder):
    with fl.loader(photo_folder, fl.presets.imagenet_train(64), 8, num_workers=2) as ld:
        assert ld.backend == "dali"
        images, labels = next(iter(ld))
        assert images.is_cuda and labels.is_cuda and images.dtype == torch.float32


@pytest.mark.gpu
@gpu
def test_gpu_torch_backend_tail_on_cuda_matches_cpu(photo_folder):
    """Same crops, flips and erasing rectangles; normalize on the GPU side stream."""
    pipeline = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(64), fl.RandomFlip(), fl.Normalize(),
                           fl.RandomErasing(p=0.5, value=0.0))
    cpu = batches(photo_folder, pipeline, "torch", device="cpu")
    on_gpu = batches(photo_folder, pipeline, "torch", device="cuda")
    for (xc, yc, ic, _), (xg, yg, ig, _) in zip(cpu, on_gpu):
        assert torch.equal(ic, ig) and torch.equal(yc, yg)
        assert torch.allclose(xc, xg, atol=1e-5)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_dali_native_opt_in_equal_batches_and_full_cover(jpeg_folder, world):
    seen = []
    for rank in range(world):
        with fl.loader(jpeg_folder, fl.presets.imagenet_train(16), 4, backend="dali-native",
                       num_workers=1, dist=(rank, world)) as ld:
            got = list(ld)
            assert len(got) == len(ld) == -(-(-(-37 // world)) // 4)
            src = ld.source
        for b in got:
            assert b.images.shape[1:] == (3, 16, 16)
            assert all(int(l) == int(src.labels[i]) for l, i in zip(b.labels, b.indices))
        seen += [i for b in got for i in b.indices[~b.padded].tolist()]
    assert sorted(seen) == list(range(37))


@pytest.mark.parametrize("kind", ["tfrecord", "lmdb"])
def test_dali_native_reads_shards(jpeg_folder, tmp_path, kind):
    convert(jpeg_folder, tmp_path / kind, format=kind, shards=2)
    with fl.loader(tmp_path / kind, fl.presets.imagenet_eval(16), 8, backend="dali-native",
                   num_workers=1, shuffle=False) as ld:
        batches = list(ld)
    labels = torch.cat([b.labels for b in batches]).tolist()
    assert len(labels) == 37 and sorted(labels) == sorted(i % 3 for i in range(37))


def test_dali_native_refuses_what_it_cannot_keep(jpeg_folder):
    with pytest.raises(fl.SpecError, match="last_batch='partial'"):
        fl.loader(jpeg_folder, fl.presets.imagenet_eval(16), 4, backend="dali-native", last_batch="pad")
    with fl.loader(jpeg_folder, fl.presets.imagenet_eval(16), 4, backend="dali-native", num_workers=1) as ld:
        with pytest.raises(fl.SpecError, match="cannot resume mid-epoch"):
            ld.load_state_dict({**ld.state_dict(), "position": 8})


def test_no_unused_feeder_output_warning(png_folder, recwarn):
    """A centre crop reaching outside the image without a Resize: the feeder sends no resize
    size DALI would not use (DALI warns about every unused external_source output)."""
    with fl.loader(png_folder, fl.Pipeline(fl.Decode(), fl.CenterCrop(100)), 4, backend="dali",
                   num_workers=1) as ld:
        list(ld)
    assert not [w for w in recwarn if "is not used" in str(w.message)]
