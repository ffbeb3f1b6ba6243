"""The same real photographs read from the folder, from TFRecord and from LMDB shards.

    python benchmarks/formats.py [--samples 2000] [--rounds 5] [--pipeline train|eval]

The photo set (``real_photos.py``) is converted by ``fastload convert`` twice per format: as
it converts by default (JPEGs rewritten losslessly with restart markers) and with
``--no-restarts`` (the files' bytes as they are: what the format itself costs). Every run is
the torch backend in a fresh process (``ceiling_pairs.py``'s child: one warm-up epoch, then
``--epochs`` timed epochs, 2 workers, batch 64); the sources take turns in an order rotated
every round. Reported per source: median images/s and CPU time per image, and the median
over rounds of its ratio to the folder in the same round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from ceiling_pairs import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pipeline", choices=("train", "eval"), default="train")
    args = parser.parse_args()
    from real_photos import make_photo_folder

    from fastload.tools.convert import convert

    with tempfile.TemporaryDirectory() as tmp:
        folder, stats = make_photo_folder(Path(tmp) / "photos", args.samples, classes=10)
        print(f"real photographs: {stats}", flush=True)
        sources = {"folder": folder}
        for fmt in ("tfrecord", "lmdb"):
            for restarts in (True, False):
                name = fmt + ("" if restarts else " --no-restarts")
                sources[name] = Path(tmp) / name.replace(" --", "-")
                convert(folder, sources[name], format=fmt, shards=8, restarts=restarts)
        names = list(sources)
        got: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                got[name].append(measure("torch", str(sources[name]), args.pipeline, args.epochs))
            print(f"round {r + 1}: " + ", ".join(f"{n} {got[n][-1]['images_per_s']:.0f}"
                                                 for n in names), flush=True)
    print(f"\n| source ({args.pipeline}) | median img/s | CPU ms/image | vs folder, img/s "
          "(median of rounds) | vs folder, CPU |")
    print("|---|---|---|---|---|")
    for name in names:
        rate = [g["images_per_s"] for g in got[name]]
        cpu = [g["cpu_ms_per_image"] for g in got[name]]
        ratio = [g["images_per_s"] / f["images_per_s"] for g, f in zip(got[name], got["folder"])]
        cpu_ratio = [f["cpu_ms_per_image"] / g["cpu_ms_per_image"]
                     for g, f in zip(got[name], got["folder"])]
        print(f"| {name} | {statistics.median(rate):.0f} | {statistics.median(cpu):.3f} | "
              f"{statistics.median(ratio):.2f}x ({min(ratio):.2f}-{max(ratio):.2f}) | "
              f"{statistics.median(cpu_ratio):.2f}x |")


if __name__ == "__main__":
    main()
