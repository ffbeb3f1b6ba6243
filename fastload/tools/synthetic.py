"""Generated datasets for a machine with no data: photographic-like JPEGs, not noise.

Each image is a smooth colour field (a bicubic-upscaled random thumbnail) with a few shaded
shapes and mild grain, encoded at JPEG quality 90 with sizes around 500x375, so decode, resize
and file sizes behave like ImageNet's. Its class shows in its content (a tint of the class's
own hue), so a model learns the classes and an example's loss falls. Deterministic in
(seed, index).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, TextIO, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .progress import Progress


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """One photographic-like RGB image."""
    thumb = rng.integers(0, 256, size=(rng.integers(3, 7), rng.integers(3, 7), 3), dtype=np.uint8)
    img = Image.fromarray(thumb, "RGB").resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(-width // 4, width)), int(rng.integers(-height // 4, height))
        x1 = x0 + int(rng.integers(width // 10, width // 2))
        y1 = y0 + int(rng.integers(height // 10, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.6, 2.0))))
    pixels = np.asarray(img, dtype=np.int16) + rng.normal(0, 5, (height, width, 1)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_image_folder(root: Union[str, Path], samples: int, *, classes: int = 10, seed: int = 0,
                      size: tuple[int, int] = (500, 375), quality: int = 90,
                      workers: int = 1, progress: Optional[TextIO] = None) -> Path:
    """Write ``samples`` JPEGs as ``root/class_XX/img_XXXXXX.jpg`` (sizes vary +-15% around
    ``size`` = (width, height)); existing complete files are kept, so a re-run is cheap.
    ``progress``: a stream told what is generated or reused, with a progress line."""
    from ..errors import SpecError

    if samples < 1 or classes < 1:
        raise SpecError(f"make_image_folder: samples={samples} and classes={classes} must be >= 1")
    root = Path(root)
    for label in range(min(classes, samples)):
        (root / f"class_{label:02d}").mkdir(parents=True, exist_ok=True)
    jobs = [(root, i, classes, seed, size, quality) for i in range(samples)
            if not _path(root, i, classes).exists()]
    if progress is not None:
        kept = samples - len(jobs)
        what = (f"reusing the {samples} JPEGs in {root}" if not jobs else
                f"generating {len(jobs)} photographic-like JPEGs in {root}"
                + (f" ({kept} already there)" if kept else "") + " (kept for re-runs)")
        progress.write(what + "\n")
    if not jobs:
        return root
    with Progress(progress, len(jobs), "JPEGs") as bar:
        if workers > 1 and len(jobs) > 16:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_one, jobs, chunksize=16):
                    bar.add(1)
        else:
            for job in jobs:
                _write_one(job)
                bar.add(1)
    return root


def _path(root: Path, i: int, classes: int) -> Path:
    return root / f"class_{i % classes:02d}" / f"img_{i:06d}.jpg"


def _write_one(job: tuple) -> None:
    root, i, classes, seed, size, quality = job
    path = _path(root, i, classes)
    rng = np.random.default_rng([seed, i])
    width = int(size[0] * rng.uniform(0.85, 1.15))
    height = int(size[1] * rng.uniform(0.85, 1.15))
    tmp = path.with_name(f".{path.name}.tmp")
    tinted(photo_like(rng, width, height), i % classes, classes).save(tmp, "JPEG",
                                                                      quality=quality)
    os.replace(tmp, path)


def tinted(img: Image.Image, label: int, classes: int, share: float = 0.35) -> Image.Image:
    """``img`` blended with the class's colour (hue ``label / classes``): learnable classes."""
    import colorsys

    colour = np.asarray(colorsys.hsv_to_rgb(label / max(1, classes), 0.9, 0.9)) * 255
    pixels = np.asarray(img, dtype=np.float32) * (1 - share) + colour.astype(np.float32) * share
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
