"""List files (CSV, TSV, JSONL, text), subsets, splits and a folder's chosen classes: the same
images and labels as the folder they come from, named errors, and the loader's contracts."""

import json

import numpy as np
import pytest
import torch

import fastload as fl

UINT8 = fl.Pipeline(fl.Decode(), fl.Resize((8, 8)))


def folder_rows(root):
    """(relative path, class name, label) of every image of an ImageFolder, in its order."""
    src = fl.FolderSource(root, index_file=None)
    return src, [(src.relative_path(i), src.classes[int(src.labels[i])], int(src.labels[i]))
                 for i in range(len(src))]


def write_list(path, kind, rows, named=True):
    if kind == "csv":
        path.write_text("path,label\n" + "".join(f"{p},{n if named else l}\n" for p, n, l in rows))
    elif kind == "csv-no-header":
        path.write_text("".join(f"{p},{n if named else l}\n" for p, n, l in rows))
    elif kind == "tsv":
        path.write_text("label\tpath\n" + "".join(f"{n if named else l}\t{p}\n" for p, n, l in rows))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"path": p, "label": n if named else l}) + "\n"
                                for p, n, l in rows))
    else:
        path.write_text("# path label\n\n" + "".join(f"{p} {n if named else l}\n" for p, n, l in rows))
    return path


def shuffled(source):
    """(images, labels) of every batch of a shuffled epoch (the loader closed after it)."""
    with fl.loader(source, UINT8, 8, shuffle=True, seed=2) as ld:
        return [(b.images, b.labels) for b in ld]


SUFFIX = {"csv": ".csv", "csv-no-header": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "txt": ".txt"}


@pytest.mark.parametrize("kind", list(SUFFIX))
@pytest.mark.parametrize("named", [True, False], ids=["class names", "integers"])
def test_a_list_reads_the_folders_images_and_labels(jpeg_folder, tmp_path, kind, named):
    src, rows = folder_rows(jpeg_folder)
    listed = write_list(tmp_path / f"train{SUFFIX[kind]}", kind, rows, named)
    lst = fl.ListSource(listed, root=jpeg_folder)
    assert len(lst) == len(src) == 37
    assert lst.classes == (src.classes if named else None)
    for i in (0, 13, 36):
        assert lst.read(i) == src.read(i)
    assert f"train{SUFFIX[kind]} line " in lst.locate(5) and str(src.path(5)) in lst.locate(5)
    assert fl.open_source(listed).describe()["kind"] == "list"  # detected by its suffix
    a, b = shuffled(lst), shuffled(jpeg_folder)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_list_paths_are_relative_to_the_list_file_unless_root_is_given(jpeg_folder, tmp_path):
    src, rows = folder_rows(jpeg_folder)
    beside = write_list(jpeg_folder / "all.txt", "txt", rows)
    try:
        assert fl.ListSource(beside).read(3) == src.read(3)
    finally:
        beside.unlink()
    absolute = [(str(jpeg_folder / p), n, l) for p, n, l in rows]
    assert fl.ListSource(write_list(tmp_path / "abs.csv", "csv", absolute)).read(4) == src.read(4)


@pytest.mark.parametrize("content, suffix, message", [
    ("path,label\na.jpg,1\nb.jpg,cat\n", ".csv", r"labels mix integers \(line 2: '1'\) and class "
                                                 r"names \(line 3: 'cat'\)"),
    ('{"path": "a.jpg"}\n', ".jsonl", r'line 1: needs "path" and "label" \(or a "mask" or "boxes"\); found \[\'path\'\]'),
    ('{"path": "a.jpg", "label": [3, 7]}\n', ".jsonl", r"multi-label lists of class indices need num_classes="),
    ("not json\n", ".jsonl", r"line 1: not a JSON object"),
    ("path,label\nonly-a-path\n", ".csv", r"line 2: 1 column\(s\), need a path and a label"),
    ("a.jpg\n", ".txt", r"line 1: 'a.jpg' needs a path and a label"),
    ("a.jpg -3\n", ".txt", r"line 1: label -3 must be >= 0"),
    ("", ".csv", r"lists no samples"),
])
def test_bad_lists_are_named_with_their_line(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(fl.SourceError, match=message):
        fl.ListSource(path)


def test_a_listed_file_that_is_missing_is_named_or_skipped(jpeg_folder, tmp_path):
    _, rows = folder_rows(jpeg_folder)
    rows.insert(2, ("class_00/nope.jpg", "class_00", 0))
    lst = fl.ListSource(write_list(tmp_path / "l.csv", "csv", rows), root=jpeg_folder)
    with pytest.raises(fl.SourceError, match=r"nope.jpg \(l.csv line 4, sample 2\): cannot read"):
        with fl.loader(lst, UINT8, 4) as ld:
            list(ld)
    with fl.loader(lst, UINT8, 4, on_error="skip") as ld:
        batches = list(ld)
    assert ld.skipped_count == 1 and 2 not in torch.cat([b.indices for b in batches]).tolist()


def test_subset_keeps_the_original_files_and_labels(jpeg_folder):
    src = fl.FolderSource(jpeg_folder, index_file=None)
    part = fl.subset(src, [30, 2, 11])
    assert len(part) == 3 and part.read(0) == src.read(30) and part.classes == src.classes
    assert part.labels.tolist() == [int(src.labels[i]) for i in (30, 2, 11)]
    assert src.locate(2) in part.locate(1) and "subset sample 1" in part.locate(1)
    with fl.loader(part, UINT8, 2) as ld:
        assert torch.cat([b.labels for b in ld]).tolist() == part.labels.tolist()
    with pytest.raises(fl.SpecError, match="index 37 .* outside the source's 37 samples"):
        fl.subset(src, [0, 37])


@pytest.mark.parametrize("stratify", [True, False])
def test_split_is_deterministic_and_puts_every_sample_in_one_part(jpeg_folder, stratify):
    src = fl.FolderSource(jpeg_folder, index_file=None)
    parts = fl.split(src, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3, stratify=stratify)
    again = fl.split(src, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3, stratify=stratify)
    other = fl.split(src, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=4, stratify=stratify)
    every = np.concatenate([p.indices for p in parts.values()])
    assert sorted(every.tolist()) == list(range(37))  # each sample in exactly one part
    assert all(np.array_equal(parts[k].indices, again[k].indices) for k in parts)
    assert not np.array_equal(parts["train"].indices, other["train"].indices)
    assert [len(p) for p in parts.values()] == ([26, 7, 4] if not stratify else
                                                [len(parts["train"]), len(parts["val"]),
                                                 len(parts["test"])])
    if stratify:  # each class split on its own: its share in every part, within one sample
        for name, fraction in (("train", 0.7), ("val", 0.2), ("test", 0.1)):
            per_class = np.bincount(parts[name].labels, minlength=3)
            whole = np.bincount(src.labels, minlength=3)
            assert np.all(np.abs(per_class - fraction * whole) < 1), (name, per_class)
    with fl.loader(parts["val"], UINT8, 2, dist=(1, 2)) as ld:  # a part is a plain source
        state = ld.state_dict()
        assert len(ld) == -(-len(parts["val"]) // 4) and state["samples"] == len(parts["val"])


@pytest.mark.parametrize("parts, message", [
    ({"train": 0.9, "val": 0.2}, r"sum to 1.1, not 1"),
    ({"train": 1.0, "val": 0.0}, r"part 'val' has fraction 0.0"),
    ({}, r"must be a dict of name -> fraction"),
])
def test_bad_splits_are_named(jpeg_folder, parts, message):
    with pytest.raises(fl.SpecError, match=message):
        fl.split(jpeg_folder, parts)


def test_a_folder_keeps_only_the_classes_asked_for(jpeg_folder):
    every = fl.FolderSource(jpeg_folder, index_file=None)
    two = fl.FolderSource(jpeg_folder, classes=["class_02", "class_00"])
    assert two.classes == ["class_00", "class_02"]
    assert len(two) == int(np.sum(every.labels != 1))
    want = [every.relative_path(i) for i in range(len(every)) if every.labels[i] != 1]
    assert [two.relative_path(i) for i in range(len(two))] == want
    assert set(two.labels.tolist()) == {0, 1} and two.read(len(two) - 1)[1] == 1
    with pytest.raises(fl.SourceError, match=r"no class folder\(s\) \['dogs'\]; the classes are "
                                             r"\['class_00', 'class_01', 'class_02'\]"):
        fl.FolderSource(jpeg_folder, classes=["dogs"])
