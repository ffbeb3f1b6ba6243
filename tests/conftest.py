"""Fixtures: small image folders the tests write, whose pixels encode the sample index."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

# Property tests draw the same examples on every run (derived from each test's code), so the
# suite fails only when the code changes; nothing is stored between runs. Random exploration:
# `python benchmarks/fuzz.py` (the "explore" profile with fresh seeds, each one recorded).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile("ci")

SIZES = [(64, 48), (48, 64), (80, 60), (56, 56), (72, 40)]  # (width, height)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photographic-like RGB image (fastload's synthetic generator)."""
    from fastload.tools.synthetic import photo_like

    return photo_like(np.random.default_rng(seed), width, height)


def jpeg_bytes(img: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def index_colour(index: int) -> tuple[int, int, int]:
    """A colour that survives JPEG: each channel carries 4 bits of the index in steps of 16."""
    return ((index % 16) * 16 + 8, (index // 16 % 16) * 16 + 8, (index // 256 % 16) * 16 + 8)


def decode_index(pixels: np.ndarray) -> int:
    """Invert ``index_colour`` from the mean colour of an (H, W, 3) or (3, H, W) uint8 image."""
    arr = np.asarray(pixels, dtype=np.float64)
    mean = arr.reshape(-1, 3).mean(0) if arr.shape[-1] == 3 else arr.reshape(3, -1).mean(1)
    r, g, b = (int(v // 16) for v in mean)
    return r + 16 * g + 256 * b


def write_index_folder(root: Path, samples: int, classes: int, fmt: str = "JPEG") -> Path:
    """root/class_k/img_i.{jpg,png}: sample i has label i % classes and colour index_colour(i).

    Files sort in index order inside each class, so FolderSource index != i in general; tests
    map through ``FolderSource.path``.
    """
    ext = "jpg" if fmt == "JPEG" else "png"
    for i in range(samples):
        folder = root / f"class_{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", SIZES[i % len(SIZES)], index_colour(i))
        img.save(folder / f"img_{i:05d}.{ext}", fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return root


def file_index(path: Path) -> int:
    """The i in img_i.ext."""
    return int(path.stem.split("_")[1])


@pytest.fixture(scope="session")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_index_folder(tmp_path_factory.mktemp("jpeg"), 37, 3, "JPEG")


@pytest.fixture(scope="session")
def png_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_index_folder(tmp_path_factory.mktemp("png"), 23, 2, "PNG")


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fastload.tools.synthetic import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("photo"), 24, classes=3, size=(200, 150))
