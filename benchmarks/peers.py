"""fastload against the loaders a user would otherwise pick, on the same real photographs.

    bash benchmarks/peers_setup.sh          # once: .venv-peers with FFCV, DALI, SPDL, torchvision
    python benchmarks/peers.py [--images 2000] [--rounds 5] [--epochs 2] [--json peers.json]

Every system runs the same training pipeline: RandomResizedCrop(224) (scale 0.08-1, ratio
3/4-4/3) + horizontal flip + normalize to float32 CHW, batch 64, 2 workers or threads (the
machine's 2 cores), shuffled. Each run is a fresh process of ``.venv-peers`` (torch 2.14.1 for
all, fastload included): one warm-up epoch, then ``--epochs`` timed epochs; the systems take
turns in an order rotated every round; the table gives the median images/s of the rounds and
each system's ratio to the best peer, taken within each round and then the median.

Systems:

- ``fastload``: the torch backend on the folder (the same JPEG files as the peers read).
- ``fastload-tfrecord``: the torch backend on the folder converted by ``fastload convert``
  (TFRecord, restart markers: the same pixels).
- ``ffcv``: FFCV 1.0.2 on a .beton written from the folder (``RGBImageField(write_mode="jpg")``:
  FFCV re-encodes every image with OpenCV at quality 90; the photos are quality 90 too),
  ``RandomResizedCropRGBImageDecoder``, ``RandomHorizontalFlip``, ``NormalizeImage`` (first:
  1.0.2 hangs with it after ToTensor on a CPU), ``ToTensor``, ``ToTorchImage``; threads.
- ``dali``: a hand-written DALI 2.4 CPU pipeline (``device_id=None``), DALI's own reader
  (``readers.file``), ``decoders.image_random_crop``, ``resize`` (antialiased linear),
  ``crop_mirror_normalize``; DALI's threads.
- ``spdl``: SPDL 0.8: per image ``demux_image`` + ``decode_packets`` with an FFmpeg filter
  (crop, ``scale`` bilinear, ``hflip``), batches by ``convert_frames``, normalized in torch, in
  SPDL's thread pipeline.
- ``torchvision``: ``ImageFolder`` + ``v2`` transforms (PIL decode and crop/resize, antialiased
  bilinear) in a ``DataLoader`` with persistent workers.

The photographs are ``real_photos.py``'s (recut from the photos shipped in scikit-image and
scikit-learn, re-encoded at quality 90, ~450x430).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
BATCH, WORKERS, SIZE = 64, 2, 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SYSTEMS = ("fastload", "fastload-tfrecord", "ffcv", "dali", "spdl", "torchvision")


# ---- one epoch iterator per system: each yields (images, labels) batches ----

def fastload_epochs(data: Path, kind: str):
    import fastload as fl

    source = data / "folder" if kind == "fastload" else data / "tfrecord"
    pipeline = fl.presets.imagenet_train(SIZE, erasing=0)
    loader = fl.loader(source, pipeline, BATCH, num_workers=WORKERS, backend="torch",
                       shuffle=True)
    while True:
        yield ((b.images, b.labels) for b in loader)


def ffcv_epochs(data: Path):
    import numpy as np
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import (NormalizeImage, RandomHorizontalFlip, Squeeze, ToTensor,
                                 ToTorchImage)

    loader = Loader(str(data / "ffcv.beton"), batch_size=BATCH, num_workers=WORKERS,
                    order=OrderOption.RANDOM, os_cache=True, drop_last=False, pipelines={
                        "image": [RandomResizedCropRGBImageDecoder((SIZE, SIZE)),
                                  RandomHorizontalFlip(),
                                  NormalizeImage(np.array(MEAN) * 255, np.array(STD) * 255,
                                                 np.float32),
                                  ToTensor(), ToTorchImage()],
                        "label": [IntDecoder(), ToTensor(), Squeeze()]})
    while True:
        yield iter(loader)


def dali_epochs(data: Path):
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    @pipeline_def(batch_size=BATCH, num_threads=WORKERS, device_id=None, seed=0)
    def train():
        jpegs, labels = fn.readers.file(file_root=str(data / "folder"), random_shuffle=True,
                                        name="reader")
        images = fn.decoders.image_random_crop(jpegs, device="cpu", output_type=types.RGB,
                                               random_area=[0.08, 1.0],
                                               random_aspect_ratio=[3 / 4, 4 / 3])
        images = fn.resize(images, size=[SIZE, SIZE], antialias=True)
        images = fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout="CHW", mirror=fn.random.coin_flip(),
            mean=[v * 255 for v in MEAN], std=[v * 255 for v in STD])
        return images, labels

    pipe = train()
    pipe.build()
    it = DALIGenericIterator(pipe, ["images", "labels"], reader_name="reader",
                             last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True)
    while True:
        yield ((b[0]["images"], b[0]["labels"]) for b in it)


def random_resized_crop(rng: random.Random, width: int, height: int):
    """torchvision's RandomResizedCrop box: (top, left, h, w)."""
    import math

    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    side = min(width, height)
    return (height - side) // 2, (width - side) // 2, side, side


def spdl_epochs(data: Path):
    import spdl.io
    import torch
    from spdl.pipeline import PipelineBuilder

    folder = data / "folder"
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    items = [(str(f), label) for label, c in enumerate(classes)
             for f in sorted((folder / c).iterdir())]
    rng = random.Random(0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255

    def decode(item):
        path, label = item
        packets = spdl.io.demux_image(path)
        top, left, h, w = random_resized_crop(rng, packets.width, packets.height)
        flip = ",hflip" if rng.random() < 0.5 else ""
        desc = f"crop={w}:{h}:{left}:{top},scale={SIZE}:{SIZE}:flags=bilinear{flip},format=rgb24"
        return spdl.io.decode_packets(packets, filter_desc=desc), label

    def collate(batch):
        frames, labels = zip(*batch)
        images = spdl.io.to_torch(spdl.io.convert_frames(list(frames)))  # N, H, W, C uint8
        images = images.permute(0, 3, 1, 2).float().sub_(mean).div_(std)
        return images, torch.tensor(labels)

    def epoch():
        order = items[:]
        rng.shuffle(order)
        pipeline = (PipelineBuilder().add_source(order).pipe(decode, concurrency=WORKERS)
                    .aggregate(BATCH).pipe(collate).add_sink(4).build(num_threads=WORKERS))
        with pipeline.auto_stop():
            yield from pipeline

    while True:
        yield epoch()


def torchvision_transform():
    """torchvision's v2 recipe on a PIL image: RandomResizedCrop, flip, float32, normalize."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(SIZE, antialias=True), v2.RandomHorizontalFlip(),
                       v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(MEAN, STD)])


def torchvision_epochs(data: Path):
    import torch
    from torchvision import datasets

    dataset = datasets.ImageFolder(str(data / "folder"), transform=torchvision_transform())
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True,
                                         num_workers=WORKERS, persistent_workers=True)
    while True:
        yield iter(loader)


def epochs_of(system: str, data: Path):
    if system.startswith("fastload"):
        return fastload_epochs(data, system)
    return {"ffcv": ffcv_epochs, "dali": dali_epochs, "spdl": spdl_epochs,
            "torchvision": torchvision_epochs}[system](data)


def run_child(system: str, data: Path, timed: int, make_epochs=None) -> None:
    """Time ``system`` (its epochs from ``make_epochs``, default this file's ``epochs_of``):
    one warm-up epoch, then ``timed`` epochs; one JSON line on stdout, then exit."""
    epochs = (make_epochs or epochs_of)(system, data)
    first = None
    for images, labels in next(epochs):  # warm-up: workers, JIT, page cache
        first = first or (tuple(images.shape), str(images.dtype))
    start = time.perf_counter()
    count = 0
    for _ in range(timed):
        for images, labels in next(epochs):
            count += len(labels)
    seconds = time.perf_counter() - start
    print(json.dumps({"system": system, "images": count, "seconds": seconds,
                      "images_per_s": count / seconds, "batch": first}))
    sys.stdout.flush()
    os._exit(0)  # some peers' threads do not end on their own


# ---- preparation (in the peers' environment) ----

def photo_folder(data: Path, images: int) -> Path:
    """``data/folder``: ``images`` real photographs in 10 classes, made once."""
    if not (data / "folder").exists():
        sys.path.insert(0, str(Path(__file__).parent))
        from real_photos import make_photo_folder

        made, stats = make_photo_folder(data / "folder-tmp", images, classes=10)
        made.rename(data / "folder")
        print(f"real photographs: {stats}", flush=True)
    return data / "folder"


def prepare(data: Path, images: int) -> None:
    photo_folder(data, images)
    if not (data / "tfrecord").exists():
        from fastload.tools.convert import convert

        convert(data / "folder", data / "tfrecord", shards=8)
    if not (data / "ffcv.beton").exists():
        import numpy as np
        from ffcv.fields import IntField, RGBImageField
        from ffcv.writer import DatasetWriter
        from PIL import Image

        import fastload as fl

        source = fl.FolderSource(data / "folder")

        class Photos:
            def __len__(self):
                return len(source)

            def __getitem__(self, i):
                return np.asarray(Image.open(source.path(i)).convert("RGB")), int(source.labels[i])

        tmp = data / "ffcv.beton.tmp"
        DatasetWriter(str(tmp), {"image": RGBImageField(write_mode="jpg", jpeg_quality=90),
                                 "label": IntField()}, num_workers=WORKERS).from_indexed_dataset(Photos())
        tmp.rename(data / "ffcv.beton")


def child(python: Path, *args: str, timeout: int = 900, script: str = __file__) -> str:
    """``script`` (this file by default) run by ``python`` with ``args``: its stdout."""
    out = subprocess.run([str(python), script, *args], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"{args}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return out.stdout


def main() -> None:
    drive(__doc__, SYSTEMS, __file__, prepare, epochs_of, summarize)


def drive(doc: str, systems_known, script: str, prepare_data, make_epochs, summarize_runs) -> None:
    """The command line of a peers-style benchmark (this file's, ``user_formats.py``'s): in a
    child (``--child``/``--prepare``) time one system or make the data; else prepare the data
    once and run every system in a fresh process of ``--python``, ``--rounds`` times, the
    order rotated each round, then print ``summarize_runs(runs, systems)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run")
    parser.add_argument("--systems", default=",".join(systems_known))
    parser.add_argument("--data", help="a folder to keep the photo set and its formats in "
                        "(default: a temporary one)")
    parser.add_argument("--python", default=str(PEERS_PYTHON))
    parser.add_argument("--json", help="write every run and the table here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        system, data, timed = args.child
        run_child(system, Path(data), int(timed), make_epochs=make_epochs)
        return
    if args.prepare:
        prepare_data(Path(args.prepare), args.images)
        return
    python = Path(args.python)
    if not python.exists():
        raise SystemExit(f"{python} not found: run `bash benchmarks/peers_setup.sh` first")
    systems = args.systems.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        print(child(python, "--prepare", str(data), "--images", str(args.images), script=script),
              end="")
        runs = []
        for r in range(args.rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for system in order:
                result = json.loads(child(python, "--child", system, str(data), str(args.epochs),
                                          script=script).strip().splitlines()[-1])
                result["round"] = r + 1
                runs.append(result)
                print(f"round {r + 1} {system}: {result['images_per_s']:.0f} img/s "
                      f"{result['batch']}", flush=True)
    table = summarize_runs(runs, systems)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "table": table}, indent=1))


def summarize(runs: list[dict], systems: list[str]) -> str:
    by = {(r["round"], r["system"]): r["images_per_s"] for r in runs}
    rounds = sorted({r["round"] for r in runs})
    peers = [s for s in systems if not s.startswith("fastload")]
    lines = ["| system | " + " | ".join(f"round {r}" for r in rounds) +
             " | median img/s | median ratio to the best peer |",
             "|---|" + "---|" * (len(rounds) + 2)]
    for s in systems:
        rates = [by[(r, s)] for r in rounds]
        ratios = [by[(r, s)] / max(by[(r, p)] for p in peers) for r in rounds] if peers else []
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else ""
        lines.append(f"| {s} | " + " | ".join(f"{v:.0f}" for v in rates) +
                     f" | {statistics.median(rates):.0f} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
