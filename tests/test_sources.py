"""The one harness every source passes: folder, TFRecord and LMDB built from the same folder give
the same images and labels for every index (the shards' JPEGs byte for byte the folder's
rewritten with restart markers, which keep every pixel), and identical batches through the
loader."""

import pickle

import pytest
import torch

import fastload as fl
from fastload.tools.convert import convert
from fastload.tools.restarts import with_restarts
from fastload.sources import LMDBSource, TFRecordSource


@pytest.fixture(scope="module")
def converted(jpeg_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("converted")
    convert(jpeg_folder, root / "tf", format="tfrecord", shards=3, workers=2)
    convert(jpeg_folder, root / "lmdb", format="lmdb", shards=4, workers=1)
    return {"folder": jpeg_folder, "tfrecord": root / "tf", "lmdb": root / "lmdb"}


KINDS = ["folder", "tfrecord", "lmdb"]


def expected(folder, i, kind):
    data, label = folder.read(i)
    return (data if kind == "folder" else with_restarts(data)), label


@pytest.mark.parametrize("kind", KINDS)
def test_every_index_matches_the_folder(converted, kind):
    folder = fl.FolderSource(converted["folder"])
    source = fl.open_source(converted[kind])
    assert type(source).__name__.lower().startswith(kind[:4])
    assert len(source) == len(folder) == 37
    assert source.classes == folder.classes
    for i in range(len(folder)):
        assert source.read(i) == expected(folder, i, kind)
    assert str(i) in source.locate(i)
    again = pickle.loads(pickle.dumps(source))
    assert again.read(3) == expected(folder, 3, kind)
    assert source.describe()["samples"] == 37


@pytest.mark.parametrize("kind", KINDS[1:])
def test_identical_batches_through_the_loader(converted, kind):
    pipeline = fl.presets.imagenet_train(24)
    batches = {}
    for k in ("folder", kind):
        with fl.loader(converted[k], pipeline, batch_size=8, num_workers=2, seed=7) as ld:
            batches[k] = [(b.images, b.labels, b.indices) for b in ld]
    for a, b in zip(batches["folder"], batches[kind]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_prefixes_and_globs(converted):
    tf = converted["tfrecord"]
    assert isinstance(fl.open_source(f"tfrecord:{tf}"), TFRecordSource)
    assert isinstance(fl.open_source(f"lmdb:{converted['lmdb']}"), LMDBSource)
    assert isinstance(fl.open_source(tf / "manifest.json"), TFRecordSource)
    one = fl.open_source(next(tf.glob("*-00001-of-00003.tfrecord")))
    assert len(one) == 12 and one.read(0) == expected(fl.FolderSource(converted["folder"]), 1, "tf")
    globbed = fl.open_source(str(tf / "train-0000[02]-*.tfrecord"))
    assert len(globbed) == 13 + 12


@pytest.mark.parametrize("fmt", ["tfrecord", "lmdb"])
def test_shard_window_order_through_the_loader(converted, jpeg_folder, fmt):
    """shard_window=1 on a sharded source: every sample once an epoch, one shard at a time,
    the same batches when resumed mid-epoch; refused on a folder and on a mismatched state."""
    source = fl.open_source(converted[fmt])
    shard_of = source.shard_ids()
    pipe = fl.Pipeline(fl.Decode(), fl.CenterCrop(8))

    def make():
        return fl.loader(converted[fmt], pipe, batch_size=4, shuffle=True, num_workers=0,
                         shard_window=1, seed=5, device="cpu", backend="torch")

    loader = make()
    batches = [b.indices.clone() for b in loader]
    order = torch.cat(batches).numpy()
    assert sorted(order.tolist()) == list(range(len(source)))
    runs = [shard_of[order[0]]] + [s for a, s in zip(shard_of[order], shard_of[order][1:]) if s != a]
    assert sorted(runs) == sorted(set(shard_of.tolist()))  # each shard read in one run
    assert any(order[:-1] > order[1:])  # shuffled within the shard
    state = None
    again = make()
    for k, batch in enumerate(again):
        if k == 2:
            state = again.state_dict()
            break
    assert state["shard_window"] == 1
    resumed = make()
    resumed.load_state_dict(state)
    rest = [b.indices.clone() for b in resumed]
    assert all(torch.equal(a, b) for a, b in zip(batches[3:], rest)) and len(rest) == len(batches) - 3
    plain = fl.loader(converted[fmt], pipe, batch_size=4, shuffle=True, num_workers=0,
                      device="cpu", backend="torch")
    with pytest.raises(fl.SpecError, match="shard_window"):
        plain.load_state_dict(state)
    with pytest.raises(fl.SpecError, match="needs a sharded source"):
        fl.loader(jpeg_folder, pipe, batch_size=4, shuffle=True, shard_window=2)
    with pytest.raises(fl.SpecError, match="shuffle=True"):
        fl.loader(converted[fmt], pipe, batch_size=4, shard_window=2)
