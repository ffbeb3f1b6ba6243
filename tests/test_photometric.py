"""Per-sample photometric ops: each kernel against an independent reference (PIL's
ImageEnhance / ImageOps / ImageFilter, colorsys) with the measured bound, the draws, the spec."""

import colorsys
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

import fastload as fl
from fastload.backends.torch import pixel as px
from fastload.ops.geometry import plan_sample
from fastload.ops.draws import sample_rng
from fastload.tools.synthetic import photo_like


@pytest.fixture(scope="module")
def photos():
    out = []
    for i in range(4):
        buf = io.BytesIO()
        photo_like(np.random.default_rng(i), 96, 80).save(buf, "JPEG", quality=90)
        out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def chw(im):
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous()


def differ(a, b, border=0):
    d = (a.int() - b.int()).abs()
    if border:
        d = d[:, border:-border, border:-border]
    return d.float().mean().item(), d.max().item()


@pytest.mark.parametrize("kernel, value, reference, mean_bound, max_bound", [
    ("brightness", 1.3, lambda im: ImageEnhance.Brightness(im).enhance(1.3), 0.0, 0),
    ("brightness", 0.6, lambda im: ImageEnhance.Brightness(im).enhance(0.6), 0.0, 0),
    ("contrast", 1.4, lambda im: ImageEnhance.Contrast(im).enhance(1.4), 0.7, 1),
    ("contrast", 0.5, lambda im: ImageEnhance.Contrast(im).enhance(0.5), 0.7, 1),
    ("saturation", 1.5, lambda im: ImageEnhance.Color(im).enhance(1.5), 0.5, 1),
    ("saturation", 0.3, lambda im: ImageEnhance.Color(im).enhance(0.3), 0.5, 1),
    ("grayscale", None, lambda im: im.convert("L").convert("RGB"), 0.7, 1),
    ("solarize", 128.0, lambda im: ImageOps.solarize(im, 128), 0.0, 0),
    ("hue", 0.0, lambda im: im, 0.0, 0),
])
def test_kernels_match_pil_within_the_documented_bound(photos, kernel, value, reference,
                                                       mean_bound, max_bound):
    """torchvision v2's uint8 arithmetic (truncation, floored grey) against PIL's rounding:
    at most 1 level apart, identical for brightness and solarize."""
    for im in photos:
        mean, worst = differ(px.KERNELS[kernel](chw(im), value), chw(reference(im)))
        assert mean <= mean_bound and worst <= max_bound


def test_hue_matches_colorsys(photos):
    im = photos[0]
    ours = px.hue(chw(im), 0.1).permute(1, 2, 0).numpy().astype(float)
    pixels = np.array(im).reshape(-1, 3) / 255.0
    ref = np.array([colorsys.hsv_to_rgb((h + 0.1) % 1.0, s, v)
                    for h, s, v in (colorsys.rgb_to_hsv(*p) for p in pixels)]) * 255.0
    diff = np.abs(ours.reshape(-1, 3) - ref)
    assert diff.max() < 1.0 and diff.mean() < 0.2  # truncation of the float result


def test_blur_is_a_gaussian_close_to_pils_inside_the_border(photos):
    """PIL approximates a Gaussian with box blurs and extends edges; torchvision (and we) use
    a true Gaussian kernel with reflect padding: within 2 levels on average away from borders."""
    for im in photos:
        mean, _ = differ(px.blur(chw(im), (11, 11, 1.5)), chw(im.filter(ImageFilter.GaussianBlur(1.5))),
                         border=6)
        assert mean < 0.5
    flat = torch.full((3, 20, 20), 77, dtype=torch.uint8)
    assert torch.equal(px.blur(flat, (23, 23, 2.0)), flat)  # kernel cut to a 20-pixel image


def test_color_jitter_draws_factors_in_range_and_a_random_order():
    op = fl.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    assert op.brightness == (0.6, 1.4) and op.hue == (-0.1, 0.1)
    orders = set()
    for position in range(200):
        steps = op.steps(sample_rng(0, 0, position))
        names = tuple(name for name, _ in steps)
        assert sorted(names) == ["brightness", "contrast", "hue", "saturation"]
        orders.add(names)
        values = dict(steps)
        assert 0.6 <= values["brightness"] <= 1.4 and -0.1 <= values["hue"] <= 0.1
    assert len(orders) > 12  # of 24
    assert fl.ColorJitter(brightness=0.5).steps(sample_rng(0, 0, 0))[0][0] == "brightness"


def test_three_augment_picks_each_of_its_three():
    op = fl.ThreeAugment()
    kinds = [op.steps(sample_rng(1, 0, p))[0][0] for p in range(300)]
    counts = {k: kinds.count(k) for k in ("grayscale", "solarize", "blur")}
    assert all(70 < c < 130 for c in counts.values())
    for p in range(50):
        ((kind, value),) = op.steps(sample_rng(1, 0, p))
        if kind == "blur":
            kx, ky, sigma = value
            assert 0.1 <= sigma <= 2.0 and kx == ky == 2 * int(np.ceil(3 * sigma)) + 1


def test_plans_carry_the_steps_and_keep_older_draws():
    plain = fl.presets.imagenet_train(32)
    jitter = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(32), fl.RandomFlip(),
                         fl.RandomGrayscale(p=0.5), fl.Normalize(), fl.RandomErasing(p=0.25))
    a = plan_sample(plain, 100, 120, sample_rng(0, 0, 7))
    b = plan_sample(jitter, 100, 120, sample_rng(0, 0, 7))
    assert (a.box, a.flip) == (b.box, b.flip) and a.steps == ()
    grey = [bool(plan_sample(jitter, 100, 120, sample_rng(0, 0, p)).steps[0]) for p in range(200)]
    assert 70 < sum(grey) < 130


PIPE = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(24), fl.RandomFlip(),
                   fl.ColorJitter(0.4, 0.4, 0.4, 0.1), fl.ThreeAugment(),
                   fl.RandomSolarize(160, p=0.3), fl.GaussianBlur(5, (0.5, 1.0), p=0.5),
                   fl.Normalize(), fl.RandomErasing(p=0.25))


def same_whatever_the_workers(folder, pipeline, seed):
    """One epoch with 0 and with 2 workers: identical batches (returned)."""
    runs = []
    for workers in (0, 2):
        with fl.loader(folder, pipeline, 6, num_workers=workers, seed=seed, shuffle=True) as ld:
            runs.append([b.images.clone() for b in ld])
    assert all(torch.equal(x, y) for x, y in zip(*runs))
    return runs[0]


def test_same_batches_whatever_the_workers_and_resume(photo_folder):
    epoch = same_whatever_the_workers(photo_folder, PIPE, 9)
    with fl.loader(photo_folder, PIPE, 6, num_workers=2, seed=9, shuffle=True) as ld:
        it = iter(ld)
        next(it)
        state = ld.state_dict()
    with fl.loader(photo_folder, PIPE, 6, num_workers=1, seed=0, shuffle=True) as ld:
        ld.load_state_dict(state)
        rest = [b.images for b in ld]
    assert all(torch.equal(x, y) for x, y in zip(rest, epoch[1:]))


def test_the_ops_change_pixels_as_drawn(photo_folder):
    base = fl.Pipeline(fl.Decode(), fl.Resize((24, 24)))
    grey = fl.Pipeline(fl.Decode(), fl.Resize((24, 24)), fl.RandomGrayscale(p=1.0))
    with fl.loader(photo_folder, base, 8, num_workers=0) as ld:
        plain = next(iter(ld)).images
    with fl.loader(photo_folder, grey, 8, num_workers=0) as ld:
        greyed = next(iter(ld)).images
    assert torch.equal(greyed[:, 0], greyed[:, 1]) and torch.equal(greyed[:, 1], greyed[:, 2])
    assert torch.equal(greyed, torch.stack([px.grayscale(p) for p in plain]))


def test_round_trip_and_validation():
    assert fl.Pipeline.from_json(PIPE.to_json()) == PIPE
    for make, message in (
            (lambda: fl.ColorJitter(), "ColorJitter: every factor is 0"),
            (lambda: fl.ColorJitter(hue=0.7), r"ColorJitter: hue=0.7 gives \[-0.7, 0.7\], outside"),
            (lambda: fl.ColorJitter(brightness=-1), "ColorJitter: brightness=-1 must be a number"),
            (lambda: fl.ColorJitter(contrast=(1.5, 0.5)), r"ColorJitter: contrast=\(1.5, 0.5\) must be increasing"),
            (lambda: fl.RandomGrayscale(p=2), r"RandomGrayscale: p=2 must be a probability"),
            (lambda: fl.RandomSolarize(threshold=300), "RandomSolarize: threshold=300 must be in"),
            (lambda: fl.GaussianBlur(4), "GaussianBlur: kernel_size=4 must be positive and odd"),
            (lambda: fl.GaussianBlur(3, sigma=(2, 1)), "GaussianBlur: sigma=.* increasing"),
            (lambda: fl.Pipeline(fl.Decode(), fl.Resize((8, 8)), fl.Normalize(), fl.ThreeAugment()),
             "ThreeAugment is out of place")):
        with pytest.raises(fl.SpecError, match=message):
            make()


def test_dali_refuses_what_it_does_not_run_when_the_loader_is_made(photo_folder):
    pytest.importorskip("nvidia.dali")
    with pytest.raises(fl.OpNotSupported, match=r"Lambda\(.*\) runs only on backend='torch' "
                                                r"\(backend='dali' runs ColorJitter, "):
        fl.loader(photo_folder, fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(24),
                                            fl.ColorJitter(0.4), fl.Lambda(np.fliplr)),
                  4, backend="dali")
    three = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(16), fl.ThreeAugment())
    with pytest.raises(fl.OpNotSupported, match="ThreeAugment: backend='dali-native' draws"):
        fl.loader(photo_folder, three, 4, backend="dali-native")


@pytest.mark.parametrize("op, mean_bound", [
    (fl.RandomGrayscale(p=1.0), 0.8),  # DALI's hsv rounds the luma, torchvision truncates it
    (fl.RandomSolarize(128, p=1.0), 0.3),  # pixels within a level of 128 may flip
    (fl.GaussianBlur(5, (0.5, 1.5), p=1.0), 0.3),
    (fl.ThreeAugment(), 0.8),  # a third of the images grey
])
def test_dali_runs_the_lowered_ops_with_the_same_draws(photo_folder, op, mean_bound):
    """Same samples and draws on both backends; pixels differ as the two resamplers do
    (~0.1 level without any op) plus the op's own rounding (the bound, per image)."""
    pytest.importorskip("nvidia.dali")
    pipe = fl.Pipeline(fl.Decode(), fl.Resize((32, 40)), fl.RandomFlip(), op)
    out = {}
    for backend in ("torch", "dali"):
        with fl.loader(photo_folder, pipe, 8, backend=backend, num_workers=1, seed=5) as ld:
            out[backend] = [(b.images, b.indices) for b in ld]
    for (a, i), (b, j) in zip(out["torch"], out["dali"]):
        assert torch.equal(i, j)
        per_image = (a.int() - b.int()).abs().float().flatten(1).mean(1)
        assert per_image.max() < mean_bound


def pil_shear(im, x_deg=0.0, y_deg=0.0):
    sx, sy = np.tan(np.radians(x_deg)), np.tan(np.radians(y_deg))
    return im.transform(im.size, Image.AFFINE, (1, sx, 0, sy, 1, 0), Image.NEAREST)


@pytest.mark.parametrize("kernel, value, reference, mean_bound, max_bound", [
    ("sharpness", 1.8, lambda im: ImageEnhance.Sharpness(im).enhance(1.8), 0.3, 1),
    ("sharpness", 0.2, lambda im: ImageEnhance.Sharpness(im).enhance(0.2), 0.3, 1),
    ("posterize", 3, lambda im: ImageOps.posterize(im, 3), 0.0, 0),
    ("autocontrast", None, ImageOps.autocontrast, 0.0, 0),
    ("equalize", None, ImageOps.equalize, 0.0, 0),
    ("rotate", 30.0, lambda im: im.rotate(30, Image.NEAREST), 0.0, 0),
    ("rotate", -75.0, lambda im: im.rotate(-75, Image.NEAREST), 0.0, 0),
    ("translate", (7, 0), lambda im: im.transform(im.size, Image.AFFINE, (1, 0, -7, 0, 1, 0),
                                                  Image.NEAREST), 0.0, 0),
    ("translate", (0, -5), lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, 5),
                                                   Image.NEAREST), 0.0, 0),
    ("shear_x", 20.0, lambda im: pil_shear(im, x_deg=20.0), 0.0, 0),
    ("shear_y", -15.0, lambda im: pil_shear(im, y_deg=-15.0), 0.0, 0),
])
def test_autoaugment_kernels_match_pil(photos, kernel, value, reference, mean_bound, max_bound):
    """Geometric ops (nearest, fill 0), posterize, autocontrast and equalize are identical to
    PIL (torchvision's PIL path); sharpness within 1 level (truncation vs rounding)."""
    for im in photos:
        mean, worst = differ(px.KERNELS[kernel](chw(im), value), chw(reference(im)))
        assert mean <= mean_bound and worst <= max_bound


def test_trivial_augment_draws_every_op_with_its_magnitudes():
    op = fl.TrivialAugmentWide()
    seen = {}
    for position in range(2000):
        for name, value in op.steps(sample_rng(2, 0, position)):
            seen.setdefault(name, []).append(value)
    assert set(seen) == {"shear_x", "shear_y", "translate", "rotate", "brightness", "saturation",
                         "contrast", "sharpness", "posterize", "solarize", "autocontrast",
                         "equalize"}
    assert max(abs(v) for v in seen["rotate"]) <= 135 and min(seen["rotate"]) < -100
    assert all(0.01 - 1e-9 <= v <= 1.99 + 1e-9 for v in seen["brightness"])
    assert set(seen["posterize"]) <= set(range(2, 9)) and 2 in seen["posterize"]
    assert max(abs(c) for v in seen["translate"] for c in v) == 32
    assert max(abs(v) for v in seen["shear_x"]) == pytest.approx(np.degrees(np.arctan(0.99)))


def test_rand_augment_magnitude_noise_and_probability():
    fixed = fl.RandAugment(num_ops=2, magnitude=9)
    values = {v for p in range(400) for n, v in fixed.steps(sample_rng(0, 0, p), (224, 224))
              if n == "rotate"}
    assert len(values) == 2 and all(abs(v) == pytest.approx(30.0 * 9 / 30) for v in values)
    noisy = fl.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=11, magnitude_std=0.5, p=0.5)
    rotations = [abs(v) for p in range(2000)
                 for n, v in noisy.steps(sample_rng(0, 0, p), (224, 224)) if n == "rotate"]
    assert 30 * 7 / 10 < np.mean(rotations) < 30 * 10 / 10 and max(rotations) <= 30.0
    assert len(set(np.round(rotations, 3))) > 50  # the noise spreads the magnitude
    counts = [len(noisy.steps(sample_rng(0, 0, p), (224, 224))) for p in range(1000)]
    assert 0.8 < np.mean(counts) < 1.2  # 2 ops at p=0.5, a few of them without a kernel


AUTO = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(24), fl.RandomFlip(),
                   fl.TrivialAugmentWide(), fl.RandAugment(magnitude_std=0.5),
                   fl.Normalize(), fl.RandomErasing(p=0.1))


def test_autoaugment_pipelines_are_deterministic_across_workers(photo_folder):
    same_whatever_the_workers(photo_folder, AUTO, 4)
    assert fl.Pipeline.from_json(AUTO.to_json()) == AUTO


def test_autoaugment_validation():
    for make, message in (
            (lambda: fl.TrivialAugmentWide(num_magnitude_bins=1), "TrivialAugmentWide: num_magnitude_bins=1"),
            (lambda: fl.RandAugment(num_ops=0), "RandAugment: num_ops=0 must be an int >= 1"),
            (lambda: fl.RandAugment(magnitude=31), r"RandAugment: magnitude=31 must be an int bin in \[0, 30\]"),
            (lambda: fl.RandAugment(magnitude_std=-1), "RandAugment: magnitude_std=-1"),
            (lambda: fl.RandAugment(p=1.5), "RandAugment: p=1.5")):
        with pytest.raises(fl.SpecError, match=message):
            make()


@pytest.mark.parametrize("name, size, expected", [
    ("torchvision_v2", 176, ["Decode", "RandomResizedCrop", "RandomFlip", "TrivialAugmentWide",
                             "Normalize", "RandomErasing", "MixupOrCutMix"]),
    ("timm_randaugment", 224, ["Decode", "RandomResizedCrop", "RandomFlip", "RandAugment",
                               "Normalize", "RandomErasing", "MixupOrCutMix"]),
    ("deit3", 224, ["Decode", "RandomResizedCrop", "RandomFlip", "ThreeAugment", "ColorJitter",
                    "Normalize", "MixupOrCutMix"]),
])
def test_recipe_presets_run_end_to_end(photo_folder, name, size, expected):
    preset = getattr(fl.presets, name)(size, num_classes=3)
    assert [type(op).__name__ for op in preset] == expected
    assert fl.Pipeline.from_json(preset.to_json()) == preset
    small = getattr(fl.presets, name)(32, num_classes=3)
    with fl.loader(photo_folder, small, 8, num_workers=1, shuffle=True) as ld:
        images, labels = next(iter(ld))
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8, 3)
    assert torch.allclose(labels.sum(1), torch.ones(8))
    v2 = fl.presets.torchvision_v2()
    assert (v2.erasing.p, v2.mixing.mixup_alpha, v2.mixing.cutmix_alpha,
            v2.mixing.label_smoothing, v2.output_size) == (0.1, 0.2, 1.0, 0.1, (176, 176))


def test_affine_c_kernel_and_numpy_fallback_agree(photos, monkeypatch):
    image = chw(photos[1])
    ops = [(px.KERNELS[k], v) for k, v in (("rotate", 33.3), ("rotate", -135.0),
                                           ("shear_x", 44.0), ("shear_y", -30.0),
                                           ("translate", (-32, 5)))]
    fast = [f(image, v) for f, v in ops]
    monkeypatch.setattr(px, "_affine_nearest", None)
    assert all(torch.equal(f(image, v), a) for (f, v), a in zip(ops, fast))
