"""Restart markers: ``add_restarts`` rewrites a JPEG losslessly, and the region decoder then cuts
it to the restart segments a box covers: the same pixels, and nothing outside read."""

import io

import numpy as np
import pytest
from PIL import Image

import fastload as fl
from conftest import jpeg_bytes, photo
from fastload.tools.convert import convert

_jpeg = pytest.importorskip("fastload._jpeg", reason="fastload._jpeg not built (libjpeg headers)")


def pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def restart_interval(data):
    """The DRI marker's interval (MCUs), or 0; and whether the frame is sequential (SOF0/1)."""
    p, interval, sequential = 2, 0, None
    while data[p] == 0xFF and data[p + 1] != 0xDA:
        marker, length = data[p + 1], int.from_bytes(data[p + 2:p + 4], "big")
        if marker == 0xDD:
            interval = int.from_bytes(data[p + 4:p + 6], "big")
        if 0xC0 <= marker <= 0xC2:
            sequential = marker in (0xC0, 0xC1)
        p += 2 + length
    return interval, sequential


ENCODINGS = {
    "4:2:0": dict(subsampling=2),
    "4:2:2": dict(subsampling=1),
    "4:4:4": dict(subsampling=0),
    "progressive": dict(subsampling=2, progressive=True),
    "grey": dict(),
}


def encoded(encoding, width=203, height=157, seed=0):
    img = photo(width, height, seed)
    return jpeg_bytes(img.convert("L") if encoding == "grey" else img, **ENCODINGS[encoding])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_rewrite_keeps_every_pixel_and_adds_the_markers(encoding):
    data = encoded(encoding)
    out = _jpeg.add_restarts(data, 4)
    assert out is not None and out != data
    assert np.array_equal(pixels(out), pixels(data))
    mcu = 8 if encoding in ("grey", "4:4:4") else 16
    per_row = -(-203 // mcu)
    interval, sequential = restart_interval(out)
    assert sequential  # a progressive JPEG becomes sequential: the one kind a cut can seek in
    assert per_row % interval == 0 and interval == max(d for d in range(1, 5) if per_row % d == 0)
    assert 0.9 < len(out) / len(data) < 1.1
    rows, _ = restart_interval(_jpeg.add_restarts(data, 2 * per_row + 1))
    assert rows == 2 * per_row  # a row or more: whole rows


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("interval", [1, 4, "2 rows"])
@pytest.mark.parametrize("reduce", [1, 2, 8])
def test_a_box_cut_by_restart_segments_decodes_to_the_same_pixels(encoding, interval, reduce):
    data = encoded(encoding, seed=reduce)
    mcu = 8 if encoding in ("grey", "4:4:4") else 16
    cut = _jpeg.add_restarts(data, 2 * -(-203 // mcu) if interval == "2 rows" else interval)
    height, width = -(-157 // reduce), -(-203 // reduce)
    rng = np.random.default_rng(2)
    boxes = [(0, 0, height, width), (height - 1, width - 1, 1, 1), (height // 2, width // 2, 3, 3)]
    for _ in range(25):
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        boxes.append((top, left, int(rng.integers(1, height - top + 1)),
                      int(rng.integers(1, width - left + 1))))
    for box in boxes:
        want = _jpeg.decode_region(data, reduce, *box, 4)
        assert want is not None and _jpeg.decode_region(cut, reduce, *box, 4) == want, box


def segments(data):
    """Byte ranges of the restart segments' entropy-coded data."""
    p = 2
    while data[p + 1] != 0xDA:
        p += 2 + int.from_bytes(data[p + 2:p + 4], "big")
    start, found, q = p + 2 + int.from_bytes(data[p + 2:p + 4], "big"), [], None
    q = start
    while True:
        q = data.index(b"\xff", q)
        if data[q + 1] in (0x00, 0xFF):
            q += 1
            continue
        found.append((start, q))
        if not 0xD0 <= data[q + 1] <= 0xD7:
            return found
        start = q = q + 2


def test_the_segments_outside_the_box_are_not_read():
    data = _jpeg.add_restarts(encoded("4:2:0", 320, 240), 4)  # 20 MCUs a row: 5 segments
    spans = segments(data)
    assert len(spans) == 5 * 15
    broken = bytearray(data)
    for a, b in spans[:10]:  # the top two MCU rows (32 pixels): garbage, no markers
        broken[a:b] = bytes((a + i) % 200 for i in range(b - a))
    broken = bytes(broken)
    clean = _jpeg.decode_region(data, 1, 100, 70, 120, 200, 3)
    assert _jpeg.decode_region(broken, 1, 100, 70, 120, 200, 3) == clean
    assert _jpeg.decode_region(broken, 1, 0, 70, 20, 200, 3) != \
        _jpeg.decode_region(data, 1, 0, 70, 20, 200, 3)  # inside the garbage: no such luck
    # columns too: garbage in the first segment (64 pixels) of every row, box to its right
    broken = bytearray(data)
    for a, b in spans[::5]:
        broken[a:b] = bytes((a + i) % 200 for i in range(b - a))
    assert _jpeg.decode_region(bytes(broken), 1, 10, 80, 200, 230, 3) == \
        _jpeg.decode_region(data, 1, 10, 80, 200, 230, 3)
    # and the data may end after the box's last segment
    end = spans[5 * 6][0]  # the first 6 rows only (96 pixels)
    assert _jpeg.decode_region(data[:end], 1, 0, 0, 80, 320, 3) == \
        _jpeg.decode_region(data, 1, 0, 0, 80, 320, 3)
    with pytest.raises(EOFError):  # beyond the data: named, not grey
        _jpeg.decode_region(data[:end], 1, 150, 0, 80, 320, 3)


def test_what_cannot_be_rewritten_is_left_alone():
    data = encoded("4:2:0")
    assert _jpeg.add_restarts(b"not a jpeg", 4) is None
    assert _jpeg.add_restarts(data[: len(data) // 2], 4) is None  # truncated: keep it as is
    with pytest.raises(ValueError, match="interval=0"):
        _jpeg.add_restarts(data, 0)


def test_convert_writes_restart_markers_unless_told_not_to(photo_folder, tmp_path):
    folder = fl.FolderSource(photo_folder)
    convert(photo_folder, tmp_path / "r", shards=2)
    convert(photo_folder, tmp_path / "plain", shards=2, restarts=False)
    rewritten, plain = fl.open_source(tmp_path / "r"), fl.open_source(tmp_path / "plain")
    for i in range(len(folder)):
        data, label = folder.read(i)
        assert plain.read(i) == (data, label)
        new, new_label = rewritten.read(i)
        assert new_label == label and restart_interval(new)[0] > 0
        assert np.array_equal(pixels(new), pixels(data))
