"""Mixup / CutMix / MixupOrCutMix and the user's Lambda / BatchLambda, on real batches."""

import numpy as np
import pytest
import torch

import fastload as fl

BASE = [fl.Decode(), fl.Resize((16, 16)), fl.Normalize()]


def loader(folder, *ops, **kw):
    kw = {"batch_size": 8, "num_workers": 0, "seed": 3, **kw}
    return fl.loader(folder, fl.Pipeline(*BASE, *ops), kw.pop("batch_size"), **kw)


def run(folder, *ops, **kw):
    with loader(folder, *ops, **kw) as ld:
        return [(b.images.clone(), b.labels.clone(), b.indices.clone(), b.padded.clone())
                for b in ld]


def test_mixup_blends_each_sample_with_the_next_and_mixes_the_labels(jpeg_folder):
    plain = run(jpeg_folder)
    mixed = run(jpeg_folder, fl.Mixup(alpha=1.0, num_classes=3))
    op = fl.Mixup(alpha=1.0, num_classes=3)
    position = 0
    for (x, y, i, _), (mx, my, mi, _) in zip(plain, mixed):
        assert torch.equal(i, mi)
        draw = op.draw(3, 0, position, 16, 16)
        position += len(i)
        perm = np.roll(np.arange(len(i)), -1)
        assert draw.kind == "mixup" and 0 < draw.lam < 1
        expected = x * draw.lam + x[perm] * (1 - draw.lam)
        assert torch.allclose(mx, expected, atol=1e-5)
        assert my.shape == (len(i), 3) and my.dtype == torch.float32
        onehot = torch.nn.functional.one_hot(y, 3).float()
        assert torch.allclose(my, onehot * draw.lam + onehot[perm] * (1 - draw.lam), atol=1e-6)
        assert torch.allclose(my.sum(1), torch.ones(len(i)))


def test_cutmix_pastes_the_partners_box_and_corrects_lambda(jpeg_folder):
    op = fl.CutMix(alpha=1.0, num_classes=3, label_smoothing=0.1)
    plain = run(jpeg_folder)
    mixed = run(jpeg_folder, op)
    position = 0
    boxes = 0
    for (x, y, i, _), (mx, my, _, _) in zip(plain, mixed):
        draw = op.draw(3, 0, position, 16, 16)
        position += len(i)
        perm = np.roll(np.arange(len(i)), -1)
        y0, y1, x0, x1 = draw.box
        expected = x.clone()
        expected[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
        assert torch.equal(mx, expected)
        assert draw.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 256)
        boxes += (y1 - y0) * (x1 - x0) > 0
        smooth = torch.full((len(i), 3), 0.1 / 3)
        smooth[torch.arange(len(i)), y] = 0.9 + 0.1 / 3
        assert torch.allclose(my, smooth * draw.lam + smooth[perm] * (1 - draw.lam), atol=1e-6)
    assert boxes >= 2


def test_draws_do_not_depend_on_workers_or_resume(jpeg_folder):
    op = fl.MixupOrCutMix(num_classes=3)
    a = run(jpeg_folder, op)
    b = run(jpeg_folder, op, num_workers=2)
    for x, y in zip(a, b):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    kinds = {op.draw(3, 0, p, 16, 16).kind for p in range(0, 400, 8)}
    assert kinds == {"mixup", "cutmix"}
    with loader(jpeg_folder, op, num_workers=2) as ld:
        it = iter(ld)
        next(it), next(it)
        state = ld.state_dict()
    with loader(jpeg_folder, op, num_workers=2) as ld:
        ld.load_state_dict(state)
        rest = [(b.images, b.labels) for b in ld]
    for (x, y), (u, v, _, _) in zip(rest, a[2:]):
        assert torch.equal(x, u) and torch.equal(y, v)


def test_padded_samples_never_leak_into_real_ones(jpeg_folder):
    """Rank 1 of 2 at batch 8: its last batch holds 2 real and 6 padded samples; the real ones
    are mixed only with each other."""
    op = fl.Mixup(alpha=1.0, num_classes=3)
    plain = run(jpeg_folder, dist=(1, 2), last_batch="pad")
    mixed = run(jpeg_folder, op, dist=(1, 2), last_batch="pad")
    x, y, i, padded = plain[-1]
    mx, my, _, _ = mixed[-1]
    assert padded.tolist() == [False] * 2 + [True] * 6
    draw = op.draw(3, 0, 2 * 8 * 2 + 1, 16, 16)  # rank 1: positions 33, 35, ...
    real = x[:2] * draw.lam + x[[1, 0]] * (1 - draw.lam)
    assert torch.allclose(mx[:2], real, atol=1e-5)
    assert np.array_equal(fl.mixing.partners(padded.numpy()), [1, 0, 3, 4, 5, 6, 7, 2])


def test_mixing_ops_validate_and_round_trip():
    op = fl.MixupOrCutMix(mixup_alpha=0.2, cutmix_alpha=1.0, num_classes=1000,
                          label_smoothing=0.1)
    pipe = fl.Pipeline(*BASE, fl.RandomErasing(0.1), op)
    assert fl.Pipeline.from_json(pipe.to_json()) == pipe
    with pytest.raises(fl.SpecError, match="Mixup: alpha=-1 must be a number >= 0"):
        fl.Mixup(alpha=-1, num_classes=10)
    with pytest.raises(fl.SpecError, match="CutMix: num_classes=1 must be an int >= 2"):
        fl.CutMix(num_classes=1)
    with pytest.raises(fl.SpecError, match="MixupOrCutMix: switch_prob=2"):
        fl.MixupOrCutMix(switch_prob=2, num_classes=10)
    with pytest.raises(fl.SpecError, match="Mixup: needs Normalize before it"):
        fl.Pipeline(fl.Decode(), fl.Resize((8, 8)), fl.Mixup(num_classes=10))
    with pytest.raises(fl.SpecError, match="CutMix is out of place"):
        fl.Pipeline(*BASE, fl.Mixup(num_classes=10), fl.CutMix(num_classes=10))


def test_num_classes_other_than_the_sources_is_named_when_the_loader_is_made(jpeg_folder):
    with pytest.raises(fl.SpecError, match=r"loader: Mixup\(num_classes=2\) but the source has 3 "
                                           r"classes \(class_00, class_01, class_02\); pass "
                                           r"num_classes=3"):
        loader(jpeg_folder, fl.Mixup(num_classes=2))
    src = fl.FolderSource(jpeg_folder, index_file=None)
    unnamed = fl.DatasetSource([src.read(i) for i in range(len(src))])  # no class names
    with loader(unnamed, fl.Mixup(num_classes=2)) as ld:
        with pytest.raises(fl.SpecError, match="Mixup: num_classes=2 but a label is 2"):
            list(ld)


def brighten(image, rng):
    """A picklable per-sample op: add a random offset drawn from the sample's rng."""
    return np.clip(image.astype(np.int16) + int(rng.integers(1, 40)), 0, 255).astype(np.uint8)


def wrong_shape(image, rng):
    return image[:4]


def explode(image, rng):
    raise ValueError("boom")


UINT8 = [fl.Decode(), fl.Resize((16, 16))]


def test_lambda_runs_per_sample_in_the_workers_deterministically(jpeg_folder):
    def batches(workers, *extra):
        with fl.loader(jpeg_folder, fl.Pipeline(*UINT8, *extra), 8, num_workers=workers,
                       seed=4) as ld:
            return [b.images.clone() for b in ld]

    plain = batches(0)
    a, b = batches(0, fl.Lambda(brighten)), batches(2, fl.Lambda(brighten))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    diffs = torch.cat([(x.int() - p.int()).flatten(1).max(1).values for x, p in zip(a, plain)])
    assert diffs.min() >= 1 and diffs.max() < 40 and len(set(diffs.tolist())) > 5


def test_lambda_errors_name_the_op_the_sample_and_the_file(jpeg_folder):
    src = fl.FolderSource(jpeg_folder)
    for fn, message in ((wrong_shape, r"returned uint8 \(4, 16, 3\); expected uint8 \(16, 16, 3\)"),
                        (explode, r"raised ValueError: boom")):
        with fl.loader(jpeg_folder, fl.Pipeline(*UINT8, fl.Lambda(fn)), 4, num_workers=1) as ld:
            with pytest.raises(fl.TransformError, match=rf"Lambda\({fn.__name__}\): "
                                                        rf".*img_00000.jpg \(sample 0\).*{message}"):
                list(ld)
    assert src.path(0).name == "img_00000.jpg"
    with pytest.raises(fl.SpecError, match="Lambda: fn=.*cannot be pickled"):
        fl.Lambda(lambda image, rng: image)
    with pytest.raises(fl.SpecError, match=r"Lambda\(brighten\) holds a Python function"):
        fl.Pipeline(*UINT8, fl.Lambda(brighten)).to_json()


def test_lambda_is_refused_on_the_dali_backend_when_the_loader_is_made(jpeg_folder):
    pytest.importorskip("nvidia.dali")
    with pytest.raises(fl.SpecError, match=r"Lambda\(brighten\) runs only on backend='torch'"):
        fl.loader(jpeg_folder, fl.Pipeline(*UINT8, fl.Lambda(brighten)), 4, backend="dali")


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_batch_lambda_sees_the_finished_batch_on_any_backend(jpeg_folder, backend):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    seen = []

    def record(images, labels):  # a closure: BatchLambda needs no pickling
        seen.append(images.shape)
        return images * 0 + 1, labels + 100

    pipe = fl.Pipeline(*BASE, fl.BatchLambda(record))
    with fl.loader(jpeg_folder, pipe, 8, backend=backend, num_workers=1,
                   multiprocessing_context="spawn" if backend == "torch" else None) as ld:
        batches = list(ld)
    assert len(seen) == len(batches) == 5
    assert all(bool((b.images == 1).all()) and int(b.labels.min()) >= 100 for b in batches)
    bad = fl.Pipeline(*BASE, fl.BatchLambda(lambda images, labels: images))
    with fl.loader(jpeg_folder, bad, 8, backend=backend, num_workers=1) as ld:
        with pytest.raises(fl.TransformError, match=r"BatchLambda\(.*\): must return "
                                                    r"\(images, labels\)"):
            next(iter(ld))


def test_mixing_on_the_dali_backend_draws_as_the_torch_backend(jpeg_folder):
    """The batch ops run in the shared tail: the same lambdas, boxes, partners and soft labels
    on both backends; the images differ only as the backends' resized crops do."""
    pytest.importorskip("nvidia.dali")
    op = fl.MixupOrCutMix(mixup_alpha=0.4, cutmix_alpha=1.0, num_classes=3, label_smoothing=0.1)
    torch_run = run(jpeg_folder, op, shuffle=True)
    dali_run = run(jpeg_folder, op, shuffle=True, backend="dali")
    for (x, y, i, _), (dx, dy, di, _) in zip(torch_run, dali_run):
        assert torch.equal(i, di) and torch.allclose(y, dy)
        assert (x - dx).abs().mean() < 0.05  # normalized units: a fraction of one level
