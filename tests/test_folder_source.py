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


def age(root, seconds=60):
    """Make every folder under ``root`` look ``seconds`` old (a fresh listing is not saved)."""
    import os
    import time

    then = time.time() - seconds
    for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        os.utime(folder, (then, then))


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
