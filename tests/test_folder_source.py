"""FolderSource: ImageFolder layout, sorted classes and files, clear errors."""

import pickle

import pytest
from PIL import Image

import fastload as fl
from conftest import file_index


def test_layout_labels_and_bytes(jpeg_folder):
    src = fl.FolderSource(jpeg_folder)
    assert src.classes == ["class_00", "class_01", "class_02"] and len(src) == 37
    paths = [src.path(i) for i in range(len(src))]
    assert paths == sorted(paths)
    for i in range(len(src)):
        data, label = src.read(i)
        assert data == paths[i].read_bytes()
        assert label == file_index(paths[i]) % 3 == src.labels[i]
    assert src.describe() == {"kind": "folder", "root": str(jpeg_folder), "samples": 37, "classes": 3}
    again = pickle.loads(pickle.dumps(src))
    assert again.read(5) == src.read(5)


def test_subfolders_spaces_unicode_and_non_images(tmp_path):
    (tmp_path / "b class" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "été 1.JPG")
    Image.new("RGB", (4, 4)).save(tmp_path / "b class" / "deep" / "er" / "x.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    src = fl.FolderSource(tmp_path)
    assert src.classes == ["a", "b class"] and len(src) == 2
    assert src.path(0).name == "été 1.JPG" and src.read(1)[1] == 1
    assert fl.open_source(f"folder:{tmp_path}").classes == src.classes


def test_empty_class_is_reported(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cats" / "1.jpg")
    with pytest.raises(fl.SourceError, match=r"class folder\(s\) with no image files: \['dogs'\]"):
        fl.FolderSource(tmp_path)
    src = fl.FolderSource(tmp_path, allow_empty_classes=True)
    assert src.classes == ["cats", "dogs"] and src.empty_classes == ["dogs"]


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no class folders"),
    (lambda p: (p / "c").mkdir(), "no image files"),
])
def test_empty_roots(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(fl.SourceError, match=message):
        fl.FolderSource(tmp_path)


def test_missing_paths_and_files_removed_later(tmp_path):
    with pytest.raises(fl.SourceError, match="no such file or folder"):
        fl.open_source(tmp_path / "nope")
    (tmp_path / "c").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "c" / "1.jpg")
    src = fl.FolderSource(tmp_path)
    (tmp_path / "c" / "1.jpg").unlink()
    with pytest.raises(fl.SourceError, match=r"1\.jpg \(sample 0\): cannot read"):
        src.read(0)


def age(root, seconds=2.1):
    """Let every folder under ``root`` become older than the 2 s within which a listing is not
    saved (its status-change time cannot be set back)."""
    import time

    time.sleep(seconds)


def write_tree(root, classes=3, per_class=4):
    for c in range(classes):
        (root / f"c{c}" / "sub").mkdir(parents=True)
        for k in range(per_class):
            Image.new("RGB", (4, 4), (c, k, 0)).save(root / f"c{c}" / f"{k}.jpg")
        Image.new("RGB", (4, 4)).save(root / f"c{c}" / "sub" / "deep.png")


def test_the_index_file_is_used_while_the_tree_is_unchanged(tmp_path, monkeypatch):
    from fastload.sources import folder as folder_module

    write_tree(tmp_path)
    age(tmp_path)
    first = fl.FolderSource(tmp_path)
    index = tmp_path / folder_module.INDEX_FILE
    assert index.exists() and len(first) == 15
    calls = []
    real_list = folder_module._list
    monkeypatch.setattr(folder_module, "_list", lambda *a: calls.append(a) or real_list(*a))
    second = fl.FolderSource(tmp_path)
    assert calls == []  # read from the file
    assert [second.relative_path(i) for i in range(15)] == [first.relative_path(i) for i in range(15)]
    assert list(second.labels) == list(first.labels) and second.classes == first.classes
    with open(index, "rb") as f:  # plain arrays: nothing pickled
        assert b"pickle" not in f.read()
    # every kind of change is seen: a new file, a removed file deep down, a new class
    def new_class():
        (tmp_path / "c3").mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / "c3" / "a.jpg")

    changes = [lambda: Image.new("RGB", (4, 4)).save(tmp_path / "c1" / "new.jpg"),
               lambda: (tmp_path / "c2" / "sub" / "deep.png").unlink(), new_class]
    sizes = [16, 15, 16]
    for change, size in zip(changes, sizes):
        age(tmp_path)
        fl.FolderSource(tmp_path)  # the file is current again
        calls.clear()
        change()
        fresh = fl.FolderSource(tmp_path)
        assert len(calls) == 1 and len(fresh) == size
        assert fl.FolderSource(tmp_path, index_file=None).relative_path(size - 1) == \
            fresh.relative_path(size - 1)
    # another extension set is another listing
    calls.clear()
    png = fl.FolderSource(tmp_path, extensions=(".png",), allow_empty_classes=True)
    assert len(png) == 2 and len(calls) == 1


def test_the_index_file_is_not_trusted_when_young_broken_or_elsewhere(tmp_path, monkeypatch):
    from fastload.sources import folder as folder_module

    data = tmp_path / "data"
    write_tree(data)
    fl.FolderSource(data)  # just written: a change within the same timestamp tick could hide
    assert not (data / folder_module.INDEX_FILE).exists()
    age(data)
    fl.FolderSource(data)
    (data / folder_module.INDEX_FILE).write_bytes(b"PK\x03\x04 broken")
    assert len(fl.FolderSource(data)) == 15  # listed again, and the file repaired
    assert len(folder_module._load_index(data, data / folder_module.INDEX_FILE,
                                         folder_module.IMAGE_EXTENSIONS).labels) == 15
    elsewhere = tmp_path / "cache" / "data.npz"
    elsewhere.parent.mkdir()
    assert len(fl.FolderSource(data, index_file=elsewhere)) == 15 and elsewhere.exists()
    with pytest.raises(fl.SourceError, match="nowhere/x.npz: cannot write the folder's index"):
        fl.FolderSource(data, index_file=tmp_path / "nowhere" / "x.npz")
    (data / folder_module.INDEX_FILE).unlink()  # where the default file cannot be written

    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("os.replace", refuse)  # (a read-only dataset): skipped quietly
    assert len(fl.FolderSource(data)) == 15
    assert not (data / folder_module.INDEX_FILE).exists()
    assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]


def test_a_folder_link_loop_is_named_and_a_second_link_is_followed_once(tmp_path):
    write_tree(tmp_path)
    (tmp_path / "c1" / "up").symlink_to("..")  # a loop: c1/up/c1/up/...
    with pytest.raises(fl.SourceError, match=r"c1/up -> .*leads back to a folder that contains "
                                             r"it \(\.\), a loop"):
        fl.FolderSource(tmp_path, index_file=None)
    (tmp_path / "c1" / "up").unlink()
    (tmp_path / "c1" / "sub" / "again").symlink_to("../sub", target_is_directory=True)
    with pytest.raises(fl.SourceError, match=r"c1/sub/again -> .*\(c1/sub\), a loop"):
        fl.FolderSource(tmp_path, index_file=None)
    (tmp_path / "c1" / "sub" / "again").unlink()
    (tmp_path / "c2" / "other").symlink_to(tmp_path / "c0" / "sub")  # listed under c0 already
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "far.jpg")
    (tmp_path / "c0" / "far").symlink_to(outside)  # a real folder elsewhere: followed
    with pytest.warns(UserWarning, match=r"1 folder link\(s\) lead to a folder already listed "
                                         r"and were not followed again: \['c2/other'\]"):
        src = fl.FolderSource(tmp_path, index_file=None)
    paths = [src.relative_path(i) for i in range(len(src))]
    assert len(src) == 16 and "c0/far/far.jpg" in paths and len(set(paths)) == 16


def test_a_restored_folder_time_does_not_hide_a_change(tmp_path, monkeypatch):
    """An added file with the folder's modification time set back (``touch -r``, a tarball):
    its status-change time gives it away."""
    import os

    write_tree(tmp_path)
    age(tmp_path)
    assert len(fl.FolderSource(tmp_path)) == 15
    stamp = os.stat(tmp_path / "c1")
    Image.new("RGB", (4, 4)).save(tmp_path / "c1" / "added.jpg")
    os.utime(tmp_path / "c1", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert os.stat(tmp_path / "c1").st_mtime_ns == stamp.st_mtime_ns
    assert len(fl.FolderSource(tmp_path)) == 16


def crafted_index(tmp_path, **changes):
    """A current index file of a written tree, with some of its arrays replaced."""
    import numpy as np

    from fastload.sources import folder as folder_module

    write_tree(tmp_path)
    age(tmp_path)
    fl.FolderSource(tmp_path)
    index = tmp_path / folder_module.INDEX_FILE
    with np.load(index) as f:
        arrays = dict(f)
    arrays.update(changes)
    with open(index, "wb") as f:
        np.savez(f, **arrays)
    return index


def test_an_index_with_labels_out_of_range_is_not_used(tmp_path):
    import numpy as np

    crafted_index(tmp_path, labels=np.array([0] * 14 + [7], dtype=np.int64))
    src = fl.FolderSource(tmp_path)
    assert len(src) == 15 and int(src.labels.max()) == 2


def test_an_index_whose_header_claims_more_than_it_holds_is_not_used(tmp_path):
    """2**42 labels claimed in a few bytes: checked against the file, never allocated."""
    import numpy as np

    import zipfile

    from fastload.sources.base import read_arrays

    index = crafted_index(tmp_path)
    with zipfile.ZipFile(index) as z:  # rewrite the member whole (its CRC must match)
        members = {i.filename: z.read(i) for i in z.infolist()}
    assert members["labels.npy"].count(b"'shape': (15,)") == 1
    members["labels.npy"] = members["labels.npy"].replace(b"(15,)", b"(4398046511104,)")
    with zipfile.ZipFile(index, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)
    with pytest.raises(ValueError, match="labels.npy: header"):
        read_arrays(index)
    assert len(fl.FolderSource(tmp_path)) == 15
    assert np.load(index)["labels"].shape == (15,)  # listed again, and the file rewritten
