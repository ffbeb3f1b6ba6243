"""Recipe ops on both backends: img/s of RandomResizedCrop 224 + flip + [op] + normalize,
batch 64, 2 workers (torch) / 2 threads (DALI CPU), after the first batch.

    python benchmarks/recipe_backends.py FOLDER [--backends torch,dali] [--images 768]
"""

import argparse
import time

import fastload as fl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--backends", default="torch,dali")
    parser.add_argument("--images", type=int, default=768)
    args = parser.parse_args()
    extras = [("no per-sample op", []), ("TrivialAugmentWide", [fl.TrivialAugmentWide()]),
              ("RandAugment(2, 9, mstd 0.5, p 0.5)",
               [fl.RandAugment(2, 9, magnitude_std=0.5, p=0.5)]),
              ("ColorJitter(0.4, 0.4, 0.4)", [fl.ColorJitter(0.4, 0.4, 0.4)])]
    for name, extra in extras:
        pipe = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(224), fl.RandomFlip(), *extra,
                           fl.Normalize())
        for backend in args.backends.split(","):
            with fl.loader(args.folder, pipe, 64, backend=backend, num_workers=2, seed=1,
                           shuffle=True) as batches:
                it = iter(batches)
                next(it)
                start, count = time.perf_counter(), 0
                for images, _ in it:
                    count += len(images)
                    if count >= args.images:
                        break
                print(f"{name:36s} {backend:6s} {count / (time.perf_counter() - start):7.0f} img/s",
                      flush=True)


if __name__ == "__main__":
    main()
