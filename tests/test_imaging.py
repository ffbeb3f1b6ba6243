"""The torch backend's per-sample stage and its C extensions: region decode and resampling give
the very pixels of a full decode + torch's interpolate; the pure-Python path gives the same."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import fastload as fl
from conftest import jpeg_bytes, photo
from fastload.backends.torch import imaging
from fastload.ops.draws import sample_rng
from fastload.ops.geometry import plan_sample
from fastload.image_info import read_header

try:
    from fastload import _jpeg
except ImportError:
    _jpeg = None
try:
    from fastload import _kernels
except ImportError:
    _kernels = None

needs_jpeg = pytest.mark.skipif(_jpeg is None, reason="fastload._jpeg not built (no libjpeg-turbo headers)")
needs_kernels = pytest.mark.skipif(_kernels is None, reason="fastload._kernels not built")


def test_extensions_are_built_where_they_can_be():
    """A build that silently dropped an extension would only show up as a slower loader."""
    assert _kernels is not None, "fastload._kernels failed to build (a C compiler is needed)"
    if Path("/usr/include/jpeglib.h").exists():
        assert _jpeg is not None, "libjpeg headers are here but fastload._jpeg was not built"


def full_decode(data, reduce=1):
    img = Image.open(io.BytesIO(data))
    if reduce > 1:
        img.draft(img.mode, (img.size[0] // reduce, img.size[1] // reduce))
    return np.asarray(img.convert("RGB"))


ENCODINGS = {
    "4:2:0": dict(subsampling=2),
    "4:2:2": dict(subsampling=1),
    "4:4:4": dict(subsampling=0),
    "progressive": dict(subsampling=2, progressive=True),
}


@needs_jpeg
@pytest.mark.parametrize("encoding", [*ENCODINGS, "grey"])
@pytest.mark.parametrize("reduce", [1, 2, 4])
def test_region_decode_is_the_full_decode_cropped(encoding, reduce):
    img = photo(203, 157, seed=reduce)
    data = jpeg_bytes(img.convert("L") if encoding == "grey" else img, **ENCODINGS.get(encoding, {}))
    full = full_decode(data, reduce)
    height, width = full.shape[:2]
    rng = np.random.default_rng(1)
    boxes = [(0, 0, height, width), (height - 1, width - 1, 1, 1), (0, width - 7, height, 7)]
    for _ in range(30):
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        boxes.append((top, left, int(rng.integers(1, height - top + 1)), int(rng.integers(1, width - left + 1))))
    for top, left, h, w in boxes:
        for channels in (3, 4):
            out = _jpeg.decode_region(data, reduce, top, left, h, w, channels)
            got = np.frombuffer(out, np.uint8).reshape(h, w, channels)
            assert np.array_equal(got[..., :3], full[top:top + h, left:left + w]), (top, left, h, w)


@needs_jpeg
def test_region_decode_declines_what_it_cannot_do():
    img = photo(64, 48)
    cmyk = jpeg_bytes(img.convert("CMYK"))
    assert _jpeg.decode_region(cmyk, 1, 0, 0, 48, 64, 3) is None  # PIL decodes those
    data = jpeg_bytes(img)
    with pytest.raises(EOFError, match="ends before the image does"):  # not grey-filled
        _jpeg.decode_region(data[: len(data) // 2], 1, 0, 0, 48, 64, 3)
    assert _jpeg.decode_region(b"\xff\xd8 not a jpeg", 1, 0, 0, 4, 4, 3) is None
    assert _jpeg.decode_region(data, 1, 40, 0, 9, 64, 3) is None  # past the bottom
    with pytest.raises(ValueError, match="reduce=3"):
        _jpeg.decode_region(data, 3, 0, 0, 4, 4, 3)


def test_truncated_jpeg_is_a_decode_error_naming_the_file():
    data = jpeg_bytes(photo(64, 48))
    plan = plan_sample(fl.presets.imagenet_train(16), 48, 64, sample_rng(0, 0, 0))
    with pytest.raises(fl.DecodeError, match="cut.jpg"):
        imaging.render(data[: len(data) // 2], "cut.jpg", plan, (48, 64),
                       torch.empty(3, 16, 16, dtype=torch.uint8))


@needs_kernels
def test_resample_is_torch_interpolate_then_crop():
    rng = np.random.default_rng(0)
    for trial in range(120):
        h, w = (int(v) for v in rng.integers(1, 160, 2))
        fh, fw = (int(v) for v in rng.integers(1, 200, 2))
        oh, ow = (int(v) for v in rng.integers(1, 120, 2))
        top, left = int(rng.integers(-10, fh)), int(rng.integers(-10, fw))
        flip = bool(trial % 2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        resized = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None], size=(fh, fw),
                                mode="bilinear", antialias=True)[0]
        expect = torch.zeros(3, oh, ow, dtype=torch.uint8)
        y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + oh, fh), min(left + ow, fw)
        if y1 > y0 and x1 > x0:
            expect[:, y0 - top:y1 - top, x0 - left:x1 - left] = resized[:, y0:y1, x0:x1]
        expect = expect.flip(-1) if flip else expect
        for channels in (3, 4):
            src = img if channels == 3 else np.dstack([img, np.full((h, w), 255, np.uint8)])
            out = np.empty((3, oh, ow), np.uint8)
            _kernels.resample(np.ascontiguousarray(src), h, w, channels, fh, fw, top, left, out, oh, ow, flip)
            assert np.array_equal(out, expect.numpy()), (h, w, fh, fw, top, left, oh, ow, flip, channels)


@needs_kernels
def test_resample_of_a_region_is_the_resample_of_the_whole_image():
    """Eval decodes only the rows and columns its window reads (``imaging._window_span``): the
    kernel given that region (and its origin in the image) computes the same pixels."""
    rng = np.random.default_rng(3)
    checked = 0
    for trial in range(200):
        h, w = (int(v) for v in rng.integers(8, 160, 2))
        fh, fw = (int(v) for v in rng.integers(4, 220, 2))
        oh, ow = (int(v) for v in rng.integers(1, 100, 2))
        top, left = int(rng.integers(-5, fh)), int(rng.integers(-5, fw))
        img = np.ascontiguousarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
        whole = np.empty((3, oh, ow), np.uint8)
        _kernels.resample(img, h, w, 4, fh, fw, top, left, whole, oh, ow, trial % 2 == 1)
        y0, x0, rh, rw = imaging._window_span((fh, fw), (top, left), (oh, ow), (h, w))
        region = np.ascontiguousarray(img[y0:y0 + rh, x0:x0 + rw])
        part = np.empty_like(whole)
        _kernels.resample(region, rh, rw, 4, fh, fw, top, left, part, oh, ow, trial % 2 == 1,
                          y0, x0, h, w)
        assert np.array_equal(part, whole), (h, w, fh, fw, top, left, oh, ow)
        checked += (rh, rw) != (h, w)
        if rh > 6 and fh != h and top >= 0 and top + oh <= fh and 0 <= left < fw:
            with pytest.raises(ValueError, match="outside the region"):  # the span is tight:
                short = np.ascontiguousarray(region[2:-2])  # 1 row of slack each side
                _kernels.resample(short, rh - 4, rw, 4, fh, fw, top, left, part, oh, ow, False,
                                  y0 + 2, x0, h, w)
    assert checked > 100  # most windows needed only part of the image


@needs_kernels
def test_resample_rejects_wrong_buffer_sizes():
    with pytest.raises(ValueError, match="src has 10 bytes"):
        _kernels.resample(bytes(10), 2, 2, 3, 4, 4, 0, 0, bytearray(48), 4, 4, False)


@pytest.mark.parametrize("preset", ["imagenet_train", "imagenet_eval"])
def test_same_pixels_with_and_without_the_extensions(preset, monkeypatch):
    """The C path (region decode, RGBX, C resample) and the plain path (simplejpeg/PIL, torch)
    render every sample identically, except crops decoded at 1/2..1/8 scale: there both paths
    approximate the fractional box differently (the C path resizes the decoded region, the
    plain one the whole reduced image; measured: each ~2 levels from a full-resolution crop,
    the C path slightly closer), so they agree only on average."""
    pipeline = getattr(fl.presets, preset)(64)
    encoded = [jpeg_bytes(photo(int(w), int(h), seed=i))
               for i, (w, h) in enumerate([(160, 120), (90, 140), (300, 200), (64, 64), (41, 97)])]
    encoded.append(jpeg_bytes(photo(120, 90).convert("CMYK")))  # the fallback inside the C path
    count = len(encoded) * 6

    def render_all():
        out = torch.empty(count, 3, 64, 64, dtype=torch.uint8)
        scaled = []
        for k in range(count):
            data = encoded[k % len(encoded)]
            width, height = read_header(data, f"img{k}")
            plan = plan_sample(pipeline, height, width, sample_rng(3, 0, k))
            imaging.render(data, f"img{k}", plan, (height, width), out[k])
            scaled.append(plan.reduced_decode and plan.scale >= 2)
        return out, torch.tensor(scaled)

    native, scaled = render_all()
    monkeypatch.setattr(imaging, "_jpeg", None)
    monkeypatch.setattr(imaging, "_resample", None)
    monkeypatch.setattr(imaging, "_CHANNELS", 3)
    plain, _ = render_all()
    assert torch.equal(native[~scaled], plain[~scaled])
    if preset == "imagenet_train":
        assert 0 < int(scaled.sum()) < count  # both kinds of crop were drawn
    diff = (native[scaled].float() - plain[scaled].float()).abs()
    assert diff.numel() == 0 or diff.mean() < 2.0


def test_convert_verify_and_formats_leave_torch_unloaded():
    """fastload convert must not pay torch's import (~2 s): image facts live in image_info."""
    import subprocess
    import sys

    code = ("import sys, fastload.tools.convert, fastload.tools.verify, fastload.formats, "
            "fastload.sources; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_header_with_zero_height_is_a_named_error_and_skippable(tmp_path):
    import io

    from PIL import Image

    import fastload as fl

    good = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(good, "JPEG")
    data = bytearray(good.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = b"\x00\x00"  # height 0
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a_zero.jpg").write_bytes(bytes(data))
    (tmp_path / "c" / "b_good.jpg").write_bytes(good.getvalue())
    pipe = fl.presets.imagenet_train(16)
    with fl.loader(tmp_path, pipe, 2, num_workers=0) as ld:
        with pytest.raises(fl.DecodeError, match=r"a_zero\.jpg \(sample 0\): the header gives a "
                                                 r"40x0 image"):
            list(ld)
    with fl.loader(tmp_path, pipe, 2, num_workers=0, on_error="skip") as ld:
        with pytest.warns(RuntimeWarning, match="skipped a bad sample"):
            (batch,) = list(ld)
    assert batch.indices.tolist() == [1, 1] and ld.skipped_count == 1
