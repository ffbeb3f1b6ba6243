"""The per-sample ops lowered to DALI (fastload/backends/dali/pixel.py): each DALI kernel
against the torch backend's kernel on the same uint8 images, with the measured bound; the
flip conjugation of the geometric ops; and whole pipelines with the same draws on both."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import fastload as fl
from fastload.backends.torch import pixel as px
from fastload.ops.draws import sample_rng
from fastload.ops.geometry import plan_sample
from fastload.tools.synthetic import photo_like

pytest.importorskip("nvidia.dali")
from nvidia.dali import fn, pipeline_def  # noqa: E402

from fastload.backends.dali import pixel as dp

H, W = 80, 96
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def images():
    out = []
    for i in range(4):
        buf = io.BytesIO()
        photo_like(np.random.default_rng(i), W, H).save(buf, "JPEG", quality=90)
        out.append(np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return out


def run_kernel(images, name, value, flip):
    """One step through its DALI kernel (inside a conditional, as the backend runs it)."""
    slot = dp._encode(name, value, (H, W), flip)
    kernel = "affine" if name in px.AFFINE_KERNELS else name

    @pipeline_def(batch_size=len(images), num_threads=1, device_id=None,
                  enable_conditionals=True)
    def graph():
        x, s = fn.external_source(source=lambda: (images, [slot] * len(images)), num_outputs=2,
                                  batch=True, layout=["HWC", ""])
        if s[0] == float(dp.CODES.index(kernel) + 1):
            x = dp._KERNELS[kernel](x, dp.Slot(s, s, (H, W), "cpu"))
        return x

    pipe = graph()
    pipe.build()
    (out,) = pipe.run()
    return [np.asarray(out[i]) for i in range(len(images))]


def torch_kernel(image, name, value, flip):
    src = np.ascontiguousarray(image[:, ::-1] if flip else image)
    out = px.KERNELS[name](torch.from_numpy(src).permute(2, 0, 1).contiguous(), value)
    return out.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name, value, mean_bound, max_bound", [
    ("brightness", 1.3, 0.0, 0), ("brightness", 0.6, 0.0, 0),
    ("contrast", 1.4, 0.0, 0), ("contrast", 0.5, 0.0, 0),
    ("saturation", 1.5, 0.0, 0), ("saturation", 0.3, 0.0, 0),
    ("hue", 0.2, 0.001, 1), ("hue", -0.45, 0.001, 1),
    ("grayscale", None, 0.0, 0), ("solarize", 128.0, 0.0, 0),
    ("blur", (5, 5, 1.2), 0.01, 1),  # DALI's own Gaussian window
    ("sharpness", 1.8, 0.05, 1), ("sharpness", 0.2, 0.05, 1),  # float rounding of the blend
    ("posterize", 3, 0.0, 0), ("autocontrast", None, 0.0, 0),
    ("equalize", None, 0.0, 0),  # the torch backend's kernel, in a DALI python function
    ("rotate", 30.0, 0.0, 0), ("rotate", -75.0, 0.0, 0),
    ("translate", (7, 0), 0.0, 0), ("translate", (0, -5), 0.0, 0),
    ("shear_x", 20.0, 0.0, 0), ("shear_y", -15.0, 0.0, 0),
])
@pytest.mark.parametrize("flip", [False, True])
def test_each_dali_kernel_matches_the_torch_kernel(images, name, value, mean_bound, max_bound,
                                                   flip):
    """The DALI backend flips after the ops, the torch backend before: the geometric ops'
    matrices are conjugated by the flip, every other kernel commutes with it."""
    for image, got in zip(images, run_kernel(images, name, value, flip)):
        got = got[:, ::-1] if flip else got
        diff = np.abs(torch_kernel(image, name, value, flip).astype(int) - got.astype(int))
        assert diff.mean() <= mean_bound and diff.max() <= max_bound, (diff.mean(), diff.max())


def test_an_unconjugated_matrix_would_differ(images):
    """The flip conjugation is needed (the test above would catch its loss)."""
    got = run_kernel(images, "shear_x", 20.0, False)[0][:, ::-1]
    assert np.abs(torch_kernel(images[0], "shear_x", 20.0, True).astype(int)
                  - got.astype(int)).mean() > 5


def test_every_op_but_lambda_is_lowered_and_fits_its_slots():
    ops = [fl.ColorJitter(0.4, 0.4, 0.4, 0.1), fl.TrivialAugmentWide(),
           fl.RandAugment(3, 9, magnitude_std=0.5), fl.ThreeAugment(), fl.RandomGrayscale(0.5),
           fl.RandomSolarize(100, 0.5), fl.GaussianBlur(9, (0.1, 2.0), 0.5)]
    pipe = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(64), *ops)
    assert {type(op) for op in ops} == set(dp.DALI_PIXEL_OPS)
    from fastload.ops.geometry import pixel_steps

    for i in range(300):
        steps = pixel_steps(pipe, np.random.default_rng(i))
        columns = dp.encode_steps(pipe, steps, flip=bool(i % 2))
        assert list(columns) == dp.slot_names(pipe)
        used = [int(c[0]) for c in columns.values() if c[0]]
        assert len(used) == sum(len(s) for s in steps)
        for k, op in enumerate(ops):
            allowed = {dp.CODES.index(n) + 1 for n in dp.op_kernels(op)[1]}
            assert {int(columns[f"slot{k}_{j}"][0]) for j in range(dp.op_kernels(op)[0])} \
                <= allowed | {0}


@pytest.mark.parametrize("op, bound", [
    (fl.ColorJitter(0.4, 0.4, 0.4, 0.1), 0.5),
    (fl.TrivialAugmentWide(), 1.0),
    (fl.RandAugment(2, 9, magnitude_std=0.5, p=0.5), 1.0),
])
def test_dali_runs_the_recipe_ops_with_the_same_draws(photo_folder, op, bound):
    """Same samples and draws on both backends; per image, pixels differ by the two
    resamplers' ~0.13 level, autocontrast and contrast stretching it a little, Equalize more
    (a level that moves across a histogram step moves a whole step)."""
    pipe = fl.Pipeline(fl.Decode(), fl.Resize((40, 48)), fl.RandomFlip(), op)
    out = {}
    for backend in ("torch", "dali"):
        with fl.loader(photo_folder, pipe, 8, backend=backend, num_workers=1, seed=5) as ld:
            out[backend] = [(b.images, b.indices) for b in ld]
    per_image = []
    for (a, i), (b, j) in zip(out["torch"], out["dali"]):
        assert torch.equal(i, j)
        per_image.append((a.int() - b.int()).abs().float().flatten(1).mean(1))
    per_image = torch.cat(per_image)
    for position, diff in enumerate(per_image.tolist()):  # positions: shuffle is off
        steps = plan_sample(pipe, 150, 200, sample_rng(5, 0, position)).steps
        equalized = any(name == "equalize" for op_steps in steps for name, _ in op_steps)
        assert diff < (3.0 if equalized else bound), (position, steps, diff)
    assert per_image.median() < 0.3


@pytest.mark.gpu
@gpu
def test_gpu_dali_runs_the_recipe_ops_as_the_cpu_torch_backend(photo_folder):
    pipe = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(64), fl.RandomFlip(),
                       fl.TrivialAugmentWide(), fl.ColorJitter(0.4, 0.4, 0.4), fl.Normalize())
    out = {}
    for backend, device in (("torch", "cpu"), ("dali", "cuda")):
        with fl.loader(photo_folder, pipe, 8, backend=backend, device=device, num_workers=1,
                       seed=5) as ld:
            out[backend] = [(b.images.cpu(), b.indices) for b in ld]
    for (a, i), (b, j) in zip(out["torch"], out["dali"]):
        assert torch.equal(i, j)
        assert (a - b).abs().mean() < 0.1  # normalized units: ~4 uint8 levels
