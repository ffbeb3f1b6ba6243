"""WebDataset tar shards written by the webdataset package itself: the same images and labels
as the folder they were made from, random access through an index file, named errors."""

import io
import json
import os
import tarfile

import numpy as np
import pytest
import torch

import fastload as fl

webdataset = pytest.importorskip("webdataset", reason="webdataset not installed: pip install "
                                                      "'fastload-images[test]'")
UINT8 = fl.Pipeline(fl.Decode(), fl.Resize((8, 8)))


def write_shards(folder, out, per_shard=10, label="cls", ext="jpg"):
    """The folder's samples into webdataset shards, by webdataset.ShardWriter."""
    src = fl.FolderSource(folder, index_file=None)
    out.mkdir(parents=True, exist_ok=True)
    with webdataset.ShardWriter(str(out / "train-%06d.tar"), maxcount=per_shard,
                                verbose=0) as sink:
        for i in range(len(src)):
            data, y = src.read(i)
            sample = {"__key__": f"s{i:05d}", ext: data}
            if label == "cls":
                sample["cls"] = y
            else:
                sample["json"] = {"label": y, "name": src.relative_path(i)}
            sink.write(sample)
    return src, sorted(out.glob("train-*.tar"))


@pytest.mark.parametrize("label", ["cls", "json"])
def test_shards_written_by_webdataset_read_as_the_folder(jpeg_folder, tmp_path, label):
    src, shards = write_shards(jpeg_folder, tmp_path / "wds", label=label)
    assert len(shards) == 4
    pattern = str(tmp_path / "wds" / "train-{000000..000003}.tar")
    kw = {"label_key": "json:label"} if label == "json" else {}
    wds = fl.WebDatasetSource(pattern, **kw)
    assert len(wds) == len(src) == 37
    for i in range(37):
        assert wds.read(i) == src.read(i)
    assert "train-000001.tar key 's00012' (sample 12)" in wds.locate(12)
    if label == "cls":  # detected from a path: a folder of .tar files, a glob
        assert fl.open_source(tmp_path / "wds").describe()["kind"] == "webdataset"
        assert len(fl.open_source(str(tmp_path / "wds" / "*.tar"))) == 37
        (tmp_path / "wds" / "class_x").mkdir()  # class folders beside: an ImageFolder
        (tmp_path / "wds" / "class_x" / "a.jpg").write_bytes(src.read(0)[0])
        assert fl.open_source(tmp_path / "wds").describe()["kind"] == "folder"
    labels = []
    for source in (wds, jpeg_folder):
        with fl.loader(source, UINT8, 8, shuffle=True, seed=1) as ld:
            labels.append([b.labels for b in ld])
    a, b = labels
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_the_index_is_kept_beside_the_shard_and_redone_when_the_shard_changes(jpeg_folder,
                                                                            tmp_path, monkeypatch):
    from fastload.sources import webdataset as module

    _, shards = write_shards(jpeg_folder, tmp_path / "wds")
    first = fl.WebDatasetSource(tmp_path / "wds")
    assert all(s.with_name(s.name + ".fastload-index.npz").exists() for s in shards)
    scans = []
    real = module.WebDatasetSource._scan
    monkeypatch.setattr(module.WebDatasetSource, "_scan",
                        lambda self, shard: scans.append(shard) or real(self, shard))
    again = fl.WebDatasetSource(tmp_path / "wds")
    assert scans == [] and again.read(20) == first.read(20)
    os.utime(shards[2], ns=(0, 10**9))  # the shard changed (its time, here)
    fl.WebDatasetSource(tmp_path / "wds")
    assert scans == [str(shards[2])]
    index = shards[1].with_name(shards[1].name + ".fastload-index.npz")
    with np.load(index) as f:  # an index that points past its shard: not used
        arrays = dict(f)
    arrays["offset"] = arrays["offset"] + 10**9
    with open(index, "wb") as f:
        np.savez(f, **arrays)
    scans.clear()
    assert fl.WebDatasetSource(tmp_path / "wds").read(12) == first.read(12)
    assert scans == [str(shards[1])]
    elsewhere = tmp_path / "idx"
    elsewhere.mkdir()
    fl.WebDatasetSource(tmp_path / "wds", index_dir=elsewhere)
    assert len(list(elsewhere.glob("*.fastload-index.npz"))) == 4


def add_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def shard(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            add_member(tar, name, data)
    return path


@pytest.mark.parametrize("members, message", [
    ([("a.cls", b"1")], r"sample 'a' has no image member"),
    ([("a.jpg", b"x"), ("a.png", b"y"), ("a.cls", b"1")], r"sample 'a' has two images"),
    ([("a.jpg", b"x"), ("a.cls", b"cat")], r"sample 'a': label 'cat' is not a class index"),
    ([("a.jpg", b"x")], r"sample 'a' has no cls or cls.txt member"),
])
def test_bad_samples_are_named_with_their_shard_and_key(tmp_path, members, message):
    path = shard(tmp_path / "bad.tar", members)
    with pytest.raises(fl.FormatError, match=r"bad.tar: " + message):
        fl.WebDatasetSource(path)


def test_a_truncated_shard_is_named(jpeg_folder, tmp_path):
    _, shards = write_shards(jpeg_folder, tmp_path / "wds", per_shard=40)
    data = shards[0].read_bytes()
    shards[0].write_bytes(data[:len(data) // 2])
    with pytest.raises(fl.FormatError, match=r"train-000000.tar: the member at offset \d+ needs "
                                             r"\d+ bytes but the file ends after \d+: the shard "
                                             r"is truncated"):
        fl.WebDatasetSource(shards[0])


def test_long_names_and_subfolders_group_by_key(tmp_path):
    """GNU long names (over 100 characters) and keys with folders, as tar writes them; the
    field is what follows the first dot of the last path component (webdataset's rule)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(out, "JPEG")
    image = out.getvalue()
    long_key = "d/" + "k" * 120
    path = shard(tmp_path / "long.tar", [(f"{long_key}.jpg", image), (f"{long_key}.cls", b"2"),
                                         ("e/sub/x.JPG", b"z"), ("e/sub/x.cls", b"5")])
    wds = fl.WebDatasetSource(path)
    assert wds.labels.tolist() == [2, 5] and len(wds) == 2
    assert wds.read(0) == (image, 2) and long_key in wds.locate(0)
    assert wds.read(1) == (b"z", 5) and "'e/sub/x'" in wds.locate(1)


def test_brace_patterns_expand_as_webdataset_does():
    from fastload.sources.webdataset import expand_braces

    assert expand_braces("a-{008..011}.tar") == ["a-008.tar", "a-009.tar", "a-010.tar",
                                                 "a-011.tar"]
    assert expand_braces("{x,y}/s-{0..1}.tar") == ["x/s-0.tar", "x/s-1.tar", "y/s-0.tar",
                                                   "y/s-1.tar"]
    with pytest.raises(fl.SourceError, match="at a URL are read from whole local copies; pass "
                                             "cache_dir="):
        fl.WebDatasetSource("s3://bucket/train-{000..003}.tar")


def test_convert_writes_shards_webdataset_reads_with_the_same_samples_as_every_format(
        jpeg_folder, tmp_path):
    from fastload.tools.cli import main
    from fastload.tools.convert import convert
    from fastload.tools.verify import verify

    assert main(["convert", str(jpeg_folder), str(tmp_path / "w"), "--format", "webdataset",
                 "--shards", "3"]) == 0
    assert verify(tmp_path / "w").ok
    ours = fl.open_source(tmp_path / "w")
    tfr = fl.open_source(convert(jpeg_folder, tmp_path / "t", shards=3) and tmp_path / "t")
    folder = fl.FolderSource(jpeg_folder, index_file=None)
    assert type(ours).__name__ == "WebDatasetSource" and ours.classes == folder.classes
    for i in range(len(folder)):  # the same (rewritten) image and label for every index
        assert ours.read(i) == tfr.read(i) and ours.read(i)[1] == folder.read(i)[1]
    shards = sorted(str(p) for p in (tmp_path / "w").glob("*.tar"))
    theirs = {s["__key__"]: (s["jpg"], int(s["cls"]))
              for s in webdataset.WebDataset(shards, shardshuffle=False)}
    assert len(theirs) == 37
    for i in range(37):  # the reference library reads what convert wrote
        assert theirs[f"{i:08d}"] == ours.read(i)
    convert(jpeg_folder, tmp_path / "again", format="webdataset", shards=3)
    assert all((tmp_path / "again" / p.name).read_bytes() == p.read_bytes()
               for p in (tmp_path / "w").glob("*.tar"))  # deterministic
    damaged = bytearray(open(shards[1], "rb").read())
    damaged[5000] ^= 0xFF
    open(shards[1], "wb").write(bytes(damaged))
    assert "sha256" in verify(tmp_path / "w").summary()
