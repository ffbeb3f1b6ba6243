"""Restart markers out of order: a region decode equals the whole decode's crop, or is a named
error, never other pixels. libjpeg (and PIL, simplejpeg, DALI) place a segment by its marker's
number; the cutter must not place it by its count where the two disagree."""

import numpy as np
import pytest
import torch

import fastload as fl
from conftest import jpeg_bytes, photo
from fastload.backends.torch.imaging import decode_box, decode_rgb
from fastload.errors import DecodeError

_jpeg = pytest.importorskip("fastload._jpeg", reason="fastload._jpeg not built (libjpeg headers)")

WIDTH, HEIGHT = 203, 157


def split(data):
    """(head up to the scan data, [segment bytes], [marker byte after each], tail from EOI)."""
    p = 2
    while data[p + 1] != 0xDA:
        p += 2 + int.from_bytes(data[p + 2:p + 4], "big")
    start = q = p + 2 + int.from_bytes(data[p + 2:p + 4], "big")
    head, segs, marks = data[:start], [], []
    while True:
        q = data.index(b"\xff", q)
        if data[q + 1] in (0x00, 0xFF):
            q += 1
            continue
        segs.append(data[start:q])
        if not 0xD0 <= data[q + 1] <= 0xD7:
            return head, segs, marks, data[q:]
        marks.append(data[q + 1])
        start = q = q + 2


def join(head, segs, marks, tail):
    body = b"".join(s + bytes((0xFF, m)) for s, m in zip(segs, marks))
    return head + body + segs[-1] + tail if len(segs) > len(marks) else head + body + tail


def renumbered(marks):
    return [0xD0 + (k & 7) for k in range(len(marks))]


def with_interval(data, interval):
    """The same bytes with the DRI marker's interval replaced (the data left as it is)."""
    p = 2
    while data[p + 1] != 0xDD:
        p += 2 + int.from_bytes(data[p + 2:p + 4], "big")
    return data[:p + 4] + interval.to_bytes(2, "big") + data[p + 6:]


def mutate(data, kind, j):
    """One damaged copy of a restart-marked JPEG; ``j`` picks the segment."""
    head, segs, marks, tail = split(data)
    segs, marks = list(segs), list(marks)
    if kind == "drop":                     # a segment and its marker gone, no renumbering
        del segs[j], marks[j]
    elif kind == "drop-renumbered":        # ... and the markers after it renumbered
        del segs[j], marks[j]
        marks = renumbered(marks)
    elif kind == "skip":                   # one marker number skipped
        marks[j] = 0xD0 + ((marks[j] - 0xD0 + 1) & 7)
    elif kind == "swap":                   # two markers' numbers swapped
        marks[j], marks[j + 1] = marks[j + 1], marks[j]
    elif kind == "insert":                 # an extra marker inside a segment
        half = len(segs[j]) // 2
        while segs[j][half - 1] == 0xFF:   # not between 0xFF and its stuffed 0x00
            half += 1
        segs[j:j + 1] = [segs[j][:half], segs[j][half:]]
        marks.insert(j, marks[j])
    elif kind == "insert-renumbered":
        half = len(segs[j]) // 2
        while segs[j][half - 1] == 0xFF:
            half += 1
        segs[j:j + 1] = [segs[j][:half], segs[j][half:]]
        marks = renumbered(marks + [0xD0])
    elif kind == "duplicate":              # a segment and its marker repeated
        segs.insert(j, segs[j])
        marks.insert(j, marks[j])
    elif kind == "duplicate-renumbered":
        segs.insert(j, segs[j])
        marks = renumbered(marks + [0xD0])
    return join(head, segs, marks, tail)


def interval_of(data):
    p = 2
    while data[p + 1] != 0xDD:
        p += 2 + int.from_bytes(data[p + 2:p + 4], "big")
    return int.from_bytes(data[p + 4:p + 6], "big")


MUTATIONS = ["drop", "drop-renumbered", "skip", "swap", "insert", "insert-renumbered",
             "duplicate", "duplicate-renumbered"]


def corpus(encoding, interval):
    """Every mutation at three places in the scan, and the DRI edits, of one rewritten JPEG."""
    img = photo(WIDTH, HEIGHT, seed=interval)
    data = jpeg_bytes(img.convert("L") if encoding == "grey" else img,
                      subsampling={"4:2:0": 2, "4:4:4": 0, "grey": 0}[encoding])
    data = _jpeg.add_restarts(data, interval)
    n = len(split(data)[1])
    out = {f"{kind}@{j}": mutate(data, kind, j) for kind in MUTATIONS
           for j in (1, n // 2, n - 3)}
    real = interval_of(data)
    for new in {real * 2, real + 1, max(1, real // 2)} - {real}:
        out[f"DRI {real}->{new}"] = with_interval(data, new)
    return data, out


BOXES = [(0, 0, HEIGHT, WIDTH), (40, 30, 60, 90), (100, 120, 57, 83), (0, 150, 30, 53),
         (120, 0, 37, 40), (70, 70, 3, 3)]


@pytest.mark.parametrize("encoding", ["4:2:0", "4:4:4", "grey"])
@pytest.mark.parametrize("interval", [1, 2, 4, 26])
def test_every_region_of_a_damaged_restart_jpeg_is_the_whole_decodes_or_named(encoding,
                                                                               interval):
    clean, damaged = corpus(encoding, interval)
    assert len(damaged) >= 18
    for name, data in damaged.items():
        for reduce in (1, 2):
            try:
                whole = decode_rgb(data, name, reduce)
            except DecodeError:
                whole = None  # the whole decode refuses it: the region may only refuse too
            for top, left, h, w in BOXES:
                try:
                    region = decode_box(data, (top, left, h, w), (HEIGHT, WIDTH), reduce)
                except EOFError:
                    continue  # a named error (DecodeError in the loader)
                if region is None:
                    continue  # the caller decodes the whole image
                assert whole is not None, name
                pixels, (y0, x0) = region
                rows, cols = pixels.shape[:2]
                assert np.array_equal(pixels[..., :3], whole[y0:y0 + rows, x0:x0 + cols]), \
                    (name, reduce, (top, left, h, w))


def test_out_of_order_markers_are_not_cut_and_in_order_ones_are():
    """The check that guards the cut: it gives up on a marker out of sequence, only then."""
    clean = _jpeg.add_restarts(jpeg_bytes(photo(320, 240), subsampling=2), 4)
    box = (150, 200, 60, 80)
    want = decode_rgb(clean, "clean")[150:210, 200:280]
    assert np.array_equal(np.frombuffer(_jpeg.decode_region(clean, 1, *box, 3), np.uint8)
                          .reshape(60, 80, 3), want)
    swapped = mutate(clean, "swap", 3)  # two segments of the first MCU row swap places
    got = _jpeg.decode_region(swapped, 1, *box, 3)
    assert got is None  # libjpeg resyncs (a warning): the caller's whole decode judges
    whole = decode_rgb(swapped, "swapped")
    assert not np.array_equal(whole, decode_rgb(clean, "clean"))  # the damage is real...
    assert np.array_equal(whole[150:210, 200:280], want)  # ...and far from the box


def test_a_damaged_restart_jpeg_gives_the_same_crop_from_the_loader_and_a_whole_decode(tmp_path):
    """End to end on the torch backend: a folder of damaged files, RandomResizedCrop boxes
    drawn by fastload; each crop equals the same box of the whole decode, resized."""
    import math

    from fastload.backends.torch.imaging import resample_into
    from fastload.ops.draws import sample_rng
    from fastload.ops.geometry import plan_sample

    _, damaged = corpus("4:2:0", 2)
    folder = tmp_path / "data" / "a"
    folder.mkdir(parents=True)
    names = sorted(damaged)
    for k, name in enumerate(names):
        (folder / f"{k:03d}.jpg").write_bytes(damaged[name])
    pipe = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(48, scale=(0.05, 0.5)),
                       fl.RandomFlip(p=0.5))
    with fl.loader(tmp_path / "data", pipe, batch_size=len(names), shuffle=False, seed=3,
                   num_workers=0) as loader:
        batch = next(iter(loader))
    assert batch.indices.tolist() == list(range(len(names)))
    reduced = 0
    for index, name in enumerate(names):
        plan = plan_sample(pipe, HEIGHT, WIDTH, sample_rng(3, 0, index))
        reduce = 1
        if plan.reduced_decode and plan.scale >= 2:  # the DCT-scaled decode render picks
            reduce = 2 ** min(3, int(math.log2(plan.scale)))
            reduced += 1
        whole = decode_rgb(damaged[name], name, reduce)
        sy, sx = whole.shape[0] / HEIGHT, whole.shape[1] / WIDTH
        top, left, h, w = plan.box
        # render's arithmetic, on the whole decode's rows and columns that its region decode
        # gives (all of them where that decode declines)
        region = decode_box(damaged[name], plan.box, (HEIGHT, WIDTH), reduce)
        y0, x0 = region[1] if region is not None else (0, 0)
        y1, x1 = (y0 + region[0].shape[0], x0 + region[0].shape[1]) if region is not None \
            else whole.shape[:2]
        want = torch.empty(3, 48, 48, dtype=torch.uint8)
        resample_into(whole[y0:y1, x0:x1], (top * sy - y0, left * sx - x0, h * sy, w * sx),
                      want, plan.flip)
        assert torch.equal(batch.images[index], want), name
    assert 0 < reduced < len(names)  # both kinds of decode were exercised


@pytest.mark.parametrize("pipeline", [
    fl.Pipeline(fl.Decode(), fl.Resize(64), fl.CenterCrop(56)),
    fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(96, scale=(0.2, 1.0)), fl.RandomFlip()),
], ids=["eval", "train"])
def test_the_dali_backend_crops_damaged_restart_jpegs_as_the_torch_backend(tmp_path, pipeline):
    """DALI decodes the region with libjpeg's own placement of segments: per image, its crops
    agree with the torch backend's to resampling rounding (mean < 1 level), damage included."""
    pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install "
                                              "'fastload-images[dali]'")
    _, damaged = corpus("4:2:0", 4)
    folder = tmp_path / "data" / "a"
    folder.mkdir(parents=True)
    for k, name in enumerate(sorted(damaged)):
        (folder / f"{k:03d}.jpg").write_bytes(damaged[name])
    out = {}
    for backend in ("torch", "dali"):
        with fl.loader(tmp_path / "data", pipeline, batch_size=8, backend=backend, seed=1,
                       num_workers=1, last_batch="partial") as loader:
            out[backend] = [(b.indices.clone(), b.images.clone()) for b in loader]
    assert len(out["torch"]) == len(out["dali"]) == -(-len(damaged) // 8)
    for (ia, xa), (ib, xb) in zip(out["torch"], out["dali"]):
        assert torch.equal(ia, ib)
        per_image = (xa.float() - xb.float()).abs().mean(dim=(1, 2, 3))
        assert (per_image < 1.0).all(), [sorted(damaged)[i] for i in ia[per_image >= 1.0]]
