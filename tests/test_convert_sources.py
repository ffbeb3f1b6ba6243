"""``fastload convert`` from every source: a list, WebDataset shards the webdataset package
wrote, Parquet that datasets wrote, a ``datasets.Dataset``, converted TFRecord / LMDB, a subset.
Sample ``i`` of the output is sample ``i`` of the input, in every output format."""

import json

import numpy as np
import pytest
import torch

import fastload as fl
from fastload.tools.cli import main
from fastload.tools.convert import convert

webdataset = pytest.importorskip("webdataset", reason="pip install 'fastload-images[test]'")
datasets = pytest.importorskip("datasets", reason="pip install 'fastload-images[test]'")
UINT8 = fl.Pipeline(fl.Decode(), fl.Resize((8, 8)))


@pytest.fixture(scope="module")
def inputs(jpeg_folder, tmp_path_factory):
    """The folder's samples as every kind of input, each the same samples in the same order."""
    root = tmp_path_factory.mktemp("inputs")
    src = fl.FolderSource(jpeg_folder, index_file=None)
    rows = [(src.relative_path(i), int(src.labels[i])) for i in range(len(src))]
    (root / "list.csv").write_text("path,label\n" + "".join(f"{jpeg_folder / p},{y}\n"
                                                            for p, y in rows))
    (root / "wds").mkdir()
    with webdataset.TarWriter(str(root / "wds" / "all.tar")) as sink:
        for i in range(len(src)):
            sink.write({"__key__": f"k{i:04d}", "jpg": src.read(i)[0], "cls": rows[i][1]})
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=src.classes)})
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": src.read(i)[0], "path": None} for i in range(len(src))],
         "label": [y for _, y in rows]}, features=features)
    ds.to_parquet(str(root / "train.parquet"))
    convert(jpeg_folder, root / "tfr", format="tfrecord", shards=3, restarts=False)
    convert(jpeg_folder, root / "lmdb", format="lmdb", shards=2, restarts=False)
    return {"folder": jpeg_folder, "list": root / "list.csv", "webdataset": root / "wds",
            "parquet": root / "train.parquet", "dataset": ds, "tfrecord": root / "tfr",
            "lmdb": root / "lmdb"}, src


@pytest.mark.parametrize("kind", ["list", "webdataset", "parquet", "dataset", "tfrecord", "lmdb"])
@pytest.mark.parametrize("fmt", ["tfrecord", "lmdb", "webdataset"])
def test_every_source_converts_to_every_format_sample_for_sample(inputs, tmp_path, kind, fmt):
    given, src = inputs
    manifest = convert(given[kind], tmp_path / "out", format=fmt, shards=2, restarts=False,
                       workers=1)
    out = fl.open_source(tmp_path / "out")
    assert manifest.samples == len(out) == len(src) == 37
    assert [out.read(i) for i in range(37)] == [src.read(i) for i in range(37)]
    if kind in ("parquet", "dataset", "tfrecord", "lmdb"):  # sources that carry class names
        assert manifest.classes == src.classes


def test_converted_from_parquet_gives_the_folders_batches_with_restart_markers(inputs, tmp_path):
    given, _ = inputs
    convert(given["parquet"], tmp_path / "out", format="webdataset", shards=3)
    batches = []
    for source in (tmp_path / "out", given["folder"]):
        with fl.loader(source, UINT8, 8, shuffle=True, seed=4) as ld:
            batches.append([(b.images, b.labels) for b in ld])
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(*batches))


def test_a_rerun_resumes_and_changed_input_is_refused(inputs, tmp_path):
    given, _ = inputs
    shards = tmp_path / "wds"
    shards.mkdir()
    data = (given["webdataset"] / "all.tar").read_bytes()
    (shards / "all.tar").write_bytes(data)
    first = convert(shards, tmp_path / "out", format="tfrecord", shards=2, workers=1)
    assert convert(shards, tmp_path / "out", format="tfrecord", shards=2, workers=1) == first
    (shards / "all.tar").write_bytes(data)  # rewritten: a new modification time
    with pytest.raises(fl.SourceError, match="already holds a converted dataset made from other "
                                             "input or options"):
        convert(shards, tmp_path / "out", format="tfrecord", shards=2, workers=1)


def test_a_subset_converts_with_its_own_indices(inputs, tmp_path):
    given, src = inputs
    part = fl.subset(fl.open_source(given["parquet"]), [5, 1, 30])
    convert(part, tmp_path / "out", format="lmdb", restarts=False, workers=1)
    out = fl.open_source(tmp_path / "out")
    assert [out.read(i) for i in range(3)] == [src.read(5), src.read(1), src.read(30)]


def test_the_cli_converts_a_parquet_file(inputs, tmp_path, capsys):
    given, _ = inputs
    assert main(["convert", str(given["parquet"]), str(tmp_path / "out"), "--format",
                 "webdataset", "--shards", "2", "--workers", "1"]) == 0
    assert "37 samples, 3 classes, 2 webdataset shards" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["format"] == "webdataset" and len(manifest["shards"]) == 2
    names = sorted(np.unique([m.split(".")[-1] for m in
                              __import__("tarfile").open(tmp_path / "out" / manifest["shards"][0]["file"])
                              .getnames()]))
    assert names == ["cls", "jpg"]
