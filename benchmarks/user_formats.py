"""Data where users keep it (issue 26): the same real photographs as a folder, as WebDataset
shards the ``webdataset`` package wrote, and as Parquet that Hugging Face ``datasets`` wrote;
fastload reading each, against what a user would otherwise run on the same shards.

    bash benchmarks/peers_setup.sh     # once: .venv-peers (torch 2.14.1, torchvision, webdataset, datasets)
    python benchmarks/user_formats.py --images 2000 --rounds 5 --epochs 2 --json out.json

Systems (RandomResizedCrop(224) + flip + normalize to float32 NCHW, batch 64, 2 workers, each
run a fresh process of ``.venv-peers``, one warm-up epoch then ``--epochs`` timed epochs, the
systems' order rotated every round):

- ``fastload-folder``, ``fastload-webdataset``, ``fastload-parquet``: ``fl.loader(path, ...)``.
- ``fastload-hf-dataset``: ``fl.loader(load_dataset("parquet", ...), ...)`` (the Dataset object).
- ``webdataset``: ``wds.WebDataset(shards, shardshuffle=8).shuffle(1000).decode("pil")
  .to_tuple("jpg", "cls").map_tuple(transform, int)`` in a DataLoader (2 workers, persistent).
- ``hf-with-transform``: ``load_dataset("parquet", ...).with_transform(f)`` (f applies the
  transform to the PIL images datasets decodes) in a shuffling DataLoader (2 workers, persistent).

The transform of both baselines is torchvision's v2 recipe, as in ``peers.py``. The ratio is
taken within each round (to the folder; to the baseline on the same shards), then the median.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import peers
from peers import BATCH, SIZE, WORKERS

SHARDS = 8
SYSTEMS = ("fastload-folder", "fastload-webdataset", "fastload-parquet", "fastload-hf-dataset",
           "webdataset", "hf-with-transform")
PAIRS = {"fastload-webdataset": "webdataset", "fastload-parquet": "hf-with-transform",
         "fastload-hf-dataset": "hf-with-transform"}


def parquet_files(data: Path) -> list[str]:
    return sorted(str(p) for p in (data / "parquet").glob("*.parquet"))


def epochs_of(system: str, data: Path):
    import torch

    if system.startswith("fastload"):
        import fastload as fl

        where = {"fastload-folder": data / "folder", "fastload-webdataset": data / "webdataset",
                 "fastload-parquet": data / "parquet"}.get(system)
        if where is None:
            import datasets

            where = datasets.load_dataset("parquet", data_files=parquet_files(data),
                                          split="train", cache_dir=str(data / "hf-cache"))
        loader = fl.loader(where, fl.presets.imagenet_train(SIZE, erasing=0), BATCH,
                           num_workers=WORKERS, backend="torch", shuffle=True)
        while True:
            yield ((b.images, b.labels) for b in loader)
    if system == "webdataset":
        import webdataset as wds

        shards = sorted(str(p) for p in (data / "webdataset").glob("*.tar"))
        dataset = (wds.WebDataset(shards, shardshuffle=len(shards), empty_check=False)
                   .shuffle(1000).decode("pil").to_tuple("jpg", "cls")
                   .map_tuple(peers.torchvision_transform(), int))
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=WORKERS,
                                             persistent_workers=True)
        while True:
            yield iter(loader)
    import datasets

    tf = peers.torchvision_transform()

    def apply(batch):
        return {"image": [tf(img.convert("RGB")) for img in batch["image"]],
                "label": batch["label"]}

    dataset = datasets.load_dataset("parquet", data_files=parquet_files(data), split="train",
                                    cache_dir=str(data / "hf-cache")).with_transform(apply)

    def collate(rows):
        return (torch.stack([r["image"] for r in rows]),
                torch.tensor([r["label"] for r in rows]))

    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True,
                                         num_workers=WORKERS, persistent_workers=True,
                                         collate_fn=collate)
    while True:
        yield iter(loader)


def prepare(data: Path, images: int) -> None:
    """The photo folder, WebDataset shards by webdataset.ShardWriter, Parquet by datasets."""
    import fastload as fl

    peers.photo_folder(data, images)
    source = fl.FolderSource(data / "folder", index_file=None)
    per_shard = -(-len(source) // SHARDS)
    if not (data / "webdataset").exists():
        import webdataset as wds

        (data / "webdataset-tmp").mkdir(exist_ok=True)
        with wds.ShardWriter(str(data / "webdataset-tmp" / "train-%06d.tar"), maxcount=per_shard,
                             verbose=0) as sink:
            for i in range(len(source)):
                data_bytes, label = source.read(i)
                sink.write({"__key__": f"{i:06d}", "jpg": data_bytes, "cls": int(label)})
        (data / "webdataset-tmp").rename(data / "webdataset")
    if not (data / "parquet").exists():
        import datasets

        features = datasets.Features({"image": datasets.Image(),
                                      "label": datasets.ClassLabel(names=source.classes)})
        table = datasets.Dataset.from_dict(
            {"image": [{"bytes": source.read(i)[0], "path": None} for i in range(len(source))],
             "label": [int(y) for y in source.labels]}, features=features)
        (data / "parquet-tmp").mkdir(exist_ok=True)
        for k in range(SHARDS):
            table.shard(SHARDS, k, contiguous=True).to_parquet(
                str(data / "parquet-tmp" / f"train-{k:05d}.parquet"))
        (data / "parquet-tmp").rename(data / "parquet")


def main() -> None:
    peers.drive(__doc__, SYSTEMS, __file__, prepare, epochs_of, summarize)


def summarize(runs: list[dict], systems: list[str]) -> str:
    rate = {(g["system"], g["round"]): g["images_per_s"] for g in runs}
    rounds = sorted({g["round"] for g in runs})
    lines = ["| system | " + " | ".join(f"round {r}" for r in rounds) +
             " | median img/s | vs folder (median of rounds) | vs the baseline on the same "
             "data (median of rounds) |",
             "|---|" + "---|" * len(rounds) + "---|---|---|"]
    for system in systems:
        row = [rate[system, r] for r in rounds]
        folder = [rate[system, r] / rate["fastload-folder", r] for r in rounds] \
            if "fastload-folder" in systems else None
        base = PAIRS.get(system)
        versus = [rate[system, r] / rate[base, r] for r in rounds] if base in systems else None
        lines.append(f"| {system} | " + " | ".join(f"{x:.0f}" for x in row) +
                     f" | {statistics.median(row):.0f} | " +
                     (f"{statistics.median(folder):.2f}x" if folder else "") + " | " +
                     (f"**{statistics.median(versus):.2f}x** vs {base}" if versus else "") + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
