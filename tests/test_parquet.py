"""Parquet files written by Hugging Face ``datasets`` and by pyarrow, and ``datasets.Dataset``
objects: the same images and labels as the folder they were made from, every page layout
pyarrow writes, and named errors."""

import pickle

import numpy as np
import pytest
import torch

import fastload as fl

pa = pytest.importorskip("pyarrow", reason="pyarrow not installed: pip install "
                                           "'fastload-images[test]'")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets", reason="datasets not installed: pip install "
                                                  "'fastload-images[test]'")
UINT8 = fl.Pipeline(fl.Decode(), fl.Resize((8, 8)))


def hf_dataset(folder):
    src = fl.FolderSource(folder, index_file=None)
    images = [{"bytes": src.read(i)[0], "path": src.relative_path(i)} for i in range(len(src))]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=src.classes)})
    ds = datasets.Dataset.from_dict({"image": images, "label": [int(y) for y in src.labels]},
                                    features=features)
    return src, ds


def batches(source, **kw):
    with fl.loader(source, UINT8, 8, shuffle=True, seed=3, **kw) as ld:
        return [(b.images.clone(), b.labels.clone()) for b in ld]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
                                    for x, y in zip(a, b))


def test_parquet_written_by_datasets_reads_as_the_folder(jpeg_folder, tmp_path):
    src, ds = hf_dataset(jpeg_folder)
    ds.to_parquet(str(tmp_path / "train.parquet"))
    pf = pq.ParquetFile(tmp_path / "train.parquet")
    assert pf.schema_arrow.field("image").type == pa.struct([("bytes", pa.binary()),
                                                             ("path", pa.string())])
    source = fl.ParquetSource(tmp_path / "train.parquet")
    assert len(source) == len(src) == 37
    assert source.classes == src.classes  # from the ClassLabel in the schema's metadata
    for i in range(37):
        assert source.read(i) == src.read(i)
    assert source.locate(5) == f"{tmp_path / 'train.parquet'} row group 0 row 5 (sample 5)"
    assert fl.open_source(str(tmp_path / "train.parquet")).describe()["kind"] == "parquet"
    assert fl.open_source(tmp_path).describe()["kind"] == "parquet"  # a folder of .parquet
    assert fl.open_source(f"parquet:{tmp_path / 'train.parquet'}").describe()["kind"] == "parquet"
    assert same(batches(source), batches(jpeg_folder))


def test_several_files_and_row_groups_and_the_shard_window(jpeg_folder, tmp_path):
    src, ds = hf_dataset(jpeg_folder)
    for k in range(3):  # three files, row groups of 5 rows
        part = ds.shard(num_shards=3, index=k, contiguous=True)
        pq.write_table(part.with_format("arrow")[:], tmp_path / f"part-{k}.parquet",
                       row_group_size=5)
    source = fl.ParquetSource(str(tmp_path / "part-*.parquet"))
    assert len(source) == 37 and source.describe()["row_groups"] == 9
    source.read(3)
    copy = pickle.loads(pickle.dumps(source))  # as a spawned worker gets it: no open handles
    assert not copy._image._pages and copy.read(3) == src.read(3)
    assert [source.read(i) for i in range(37)] == [src.read(i) for i in range(37)]
    assert np.array_equal(source.shard_ids()[:12], [0] * 5 + [1] * 5 + [2] * 2)
    with fl.loader(source, UINT8, 4, shuffle=True, shard_window=2, seed=1) as ld:
        labels = torch.cat([b.labels for b in ld])
    assert sorted(labels.tolist()) == sorted(int(y) for y in src.labels)


@pytest.mark.parametrize("compression", ["none", "snappy", "zstd", "gzip"])
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
@pytest.mark.parametrize("dictionary", [False, True])
def test_every_page_layout_pyarrow_writes(tmp_path, compression, page_version, dictionary):
    """Small values, small pages (many a row group), nulls among them: levels, PLAIN and
    dictionary indices, compressed or not, data pages v1 and v2."""
    rng = np.random.default_rng(7)
    values = [None if i % 7 == 3 else rng.integers(0, 256, int(rng.integers(1, 90)),
                                                   dtype=np.uint8).tobytes() for i in range(300)]
    values[10] = values[20]  # repeats: the dictionary has fewer entries than rows
    table = pa.table({"image": pa.array(values, pa.binary()), "label": list(range(300))})
    pq.write_table(table, tmp_path / "t.parquet", compression=compression,
                   data_page_version=page_version, use_dictionary=dictionary,
                   data_page_size=512, write_batch_size=16, row_group_size=128)
    source = fl.ParquetSource(tmp_path / "t.parquet")
    assert len(source._image._page_table(source, 0, "t")[0]) > 2  # several pages: the page walk
    for i in range(299, -1, -1):
        if values[i] is None:
            with pytest.raises(fl.FormatError, match=f"row {i % 128} .sample {i}.: the image "
                                                     "cell .'image'. is null"):
                source.read(i)
        else:
            assert source.read(i) == (values[i], i)


def test_a_layout_the_page_reader_declines_is_read_through_pyarrow(tmp_path):
    from fastload.formats import parquet as pages_of

    values = [bytes([i]) * (i + 1) for i in range(40)]
    pq.write_table(pa.table({"image": pa.array(values, pa.binary()), "label": [1] * 40}),
                   tmp_path / "d.parquet", use_dictionary=False,
                   column_encoding={"image": "DELTA_BYTE_ARRAY"}, data_page_size=64)
    source = fl.ParquetSource(tmp_path / "d.parquet")
    assert source._image._page_table(source, 0, "d")[0][0].encoding not in (
        pages_of.PLAIN, pages_of.RLE_DICTIONARY)
    assert [source.read(i)[0] for i in range(40)] == values


def test_plain_binary_column_with_string_labels_and_named_columns(jpeg_folder, tmp_path):
    src = fl.FolderSource(jpeg_folder, index_file=None)
    table = pa.table({"jpg": [src.read(i)[0] for i in range(len(src))],
                      "cls": [src.classes[int(y)] for y in src.labels]})
    pq.write_table(table, tmp_path / "named.parquet")
    source = fl.ParquetSource(tmp_path / "named.parquet", image_column="jpg", label_column="cls")
    assert source.classes == sorted(src.classes)
    assert [source.read(i) for i in range(37)] == [src.read(i) for i in range(37)]


def test_bad_input_is_named(tmp_path, jpeg_folder):
    good = [fl.FolderSource(jpeg_folder, index_file=None).read(0)[0]] * 3
    pq.write_table(pa.table({"picture": good, "label": [0, 1, 2]}), tmp_path / "a.parquet")
    with pytest.raises(fl.SourceError, match=r"a.parquet: no image column 'image' \(its columns: "
                                             r"\['picture', 'label'\]\); pass image_column="):
        fl.ParquetSource(tmp_path / "a.parquet")
    with pytest.raises(fl.SourceError, match=r"no label column 'y' \(its columns"):
        fl.ParquetSource(tmp_path / "a.parquet", image_column="picture", label_column="y")
    pq.write_table(pa.table({"image": good, "label": [0.0, 1.5, 2.0]}), tmp_path / "f.parquet")
    with pytest.raises(fl.FormatError, match="f.parquet row group 0 row 0 .sample 0.: the label "
                                             "column 'label' holds double"):
        fl.ParquetSource(tmp_path / "f.parquet")
    pq.write_table(pa.table({"image": good, "label": [0, None, 2]}), tmp_path / "n.parquet")
    with pytest.raises(fl.FormatError, match=r"row 1 \(sample 1\): the label is null"):
        fl.ParquetSource(tmp_path / "n.parquet")
    pq.write_table(pa.table({"image": good, "label": [0, -1, 2]}), tmp_path / "m.parquet")
    with pytest.raises(fl.FormatError, match=r"row 1 \(sample 1\): label -1 is not a class index"):
        fl.ParquetSource(tmp_path / "m.parquet")
    pq.write_table(pa.table({"image": [1, 2, 3], "label": [0, 1, 2]}), tmp_path / "i.parquet")
    with pytest.raises(fl.SourceError, match="column 'image' holds int64; the image column must "
                                             "hold encoded image bytes"):
        fl.ParquetSource(tmp_path / "i.parquet")
    whole = (tmp_path / "a.parquet").read_bytes()
    (tmp_path / "t.parquet").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(fl.FormatError, match="t.parquet: not a Parquet file, or a damaged one"):
        fl.ParquetSource(tmp_path / "t.parquet")
    with pytest.raises(fl.SourceError, match="no such Parquet file"):
        fl.ParquetSource(tmp_path / "missing.parquet")


def test_a_damaged_page_is_named_or_skipped(tmp_path, jpeg_folder):
    src = fl.FolderSource(jpeg_folder, index_file=None)
    images = [src.read(i)[0] for i in range(len(src))]
    pq.write_table(pa.table({"image": images, "label": [int(y) for y in src.labels]}),
                   tmp_path / "p.parquet", compression="snappy", use_dictionary=False,
                   row_group_size=8)
    source = fl.ParquetSource(tmp_path / "p.parquet")
    page = source._image._page_table(source, 2, "x")[0][0]
    data = bytearray((tmp_path / "p.parquet").read_bytes())
    data[page.body: page.body + 64] = b"\xff" * 64  # the snappy stream of row group 2's page
    (tmp_path / "p.parquet").write_bytes(bytes(data))
    source = fl.ParquetSource(tmp_path / "p.parquet")
    assert source.read(3) == src.read(3)
    with pytest.raises(fl.FormatError, match="p.parquet row group 2 row 1 .sample 17."):
        source.read(17)
    with fl.loader(source, UINT8, 8, shuffle=False, on_error="skip") as ld:
        seen = sum(len(b.labels) for b in ld)
        assert seen == 37 and len(ld.skipped_files) == 8  # row group 2's 8 rows


def test_a_datasets_dataset_is_read_from_its_arrow_data(jpeg_folder, tmp_path, monkeypatch):
    src, ds = hf_dataset(jpeg_folder)
    ds.to_parquet(str(tmp_path / "train.parquet"))
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"),
                                   split="train", cache_dir=str(tmp_path / "cache"))
    ds.save_to_disk(str(tmp_path / "saved"))
    saved = datasets.load_from_disk(str(tmp_path / "saved"))
    import PIL.Image

    def no_decoding(*args, **kwargs):
        raise AssertionError("PIL decoded an image")
    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    for dataset in (ds, loaded, saved):
        source = fl.open_source(dataset)
        assert isinstance(source, fl.HFDatasetSource)
        assert source.classes == src.classes
        assert [source.read(i) for i in range(37)] == [src.read(i) for i in range(37)]
    monkeypatch.undo()
    assert same(batches(saved), batches(jpeg_folder))
    picked = saved.shuffle(seed=0).select(range(10))  # an indices mapping over the table
    source = fl.open_source(picked)
    raw = picked.cast_column("image", datasets.Image(decode=False))
    assert [source.read(i) for i in range(10)] == [(raw[i]["image"]["bytes"], raw[i]["label"])
                                                   for i in range(10)]
    assert [source.read(i) for i in range(10)] != [src.read(i) for i in range(10)]


def test_a_dataset_without_usable_columns_is_named(jpeg_folder):
    _, ds = hf_dataset(jpeg_folder)
    with pytest.raises(fl.SourceError, match=r"no label column 'label' \(its columns: "
                                             r"\['image'\]\)"):
        fl.HFDatasetSource(ds.remove_columns("label"))
    names = ds.cast_column("label", datasets.Value("string"))
    with pytest.raises(fl.FormatError, match="holds string; it must hold integer class indices"):
        fl.HFDatasetSource(names)


def test_resume_mid_epoch_and_ranks_over_parquet(jpeg_folder, tmp_path):
    _, ds = hf_dataset(jpeg_folder)
    ds.to_parquet(str(tmp_path / "train.parquet"))
    source = fl.ParquetSource(tmp_path / "train.parquet")
    whole = batches(source)
    with fl.loader(source, UINT8, 8, shuffle=True, seed=3) as ld:
        it = iter(ld)
        next(it), next(it)
        state = ld.state_dict()
    with fl.loader(source, UINT8, 8, shuffle=True, seed=3) as ld:
        ld.load_state_dict(state)
        rest = [(b.images.clone(), b.labels.clone()) for b in ld]
    assert same(rest, whole[2:])
    counts = []
    for rank in range(3):
        with fl.loader(source, UINT8, 4, shuffle=True, seed=3, dist=(rank, 3)) as ld:
            counts.append(sum(1 for _ in ld))
    assert counts == [counts[0]] * 3
