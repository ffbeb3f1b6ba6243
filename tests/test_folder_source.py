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
