"""Our shards are read by the tfrecord package, DALI (CPU mode) and TensorFlow; we read theirs."""

import subprocess
import sys

import numpy as np
import pytest

import fastload as fl
from fastload.tools.convert import convert
from fastload.tools.restarts import with_restarts
from fastload.sources import TFRecordSource


@pytest.fixture(scope="module")
def shards(jpeg_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("interop")
    convert(jpeg_folder, root / "tf", shards=2)
    convert(jpeg_folder, root / "lmdb", format="lmdb", shards=2)
    return root


def test_tfrecord_package_reads_ours(shards, jpeg_folder):
    reader = pytest.importorskip("tfrecord.reader")
    folder = fl.FolderSource(jpeg_folder)
    shard = shards / "tf" / "train-00001-of-00002.tfrecord"
    records = list(reader.tfrecord_loader(str(shard), None, {"image/encoded": "byte", "image/class/label": "int"}))
    assert len(records) == 18
    for k, rec in enumerate(records):  # the JPEGs with restart markers: the same pixels
        data, label = folder.read(2 * k + 1)
        assert bytes(rec["image/encoded"]) == with_restarts(data) != data
        assert int(rec["image/class/label"][0]) == label
    from tfrecord.tools.tfrecord2idx import create_index

    create_index(str(shard), str(shards / "theirs.idx"))
    assert (shards / "theirs.idx").read_text() == (shards / "tf" / (shard.name + ".idx")).read_text()


def test_we_read_the_tfrecord_package_writer(tmp_path, jpeg_folder):
    writer = pytest.importorskip("tfrecord.writer")
    folder = fl.FolderSource(jpeg_folder)
    path = tmp_path / "theirs.tfrecord"
    w = writer.TFRecordWriter(str(path))
    for i in range(5):
        data, label = folder.read(i)
        w.write({"image/encoded": (data, "byte"), "image/class/label": (label, "int")})
    w.close()
    source = TFRecordSource(path, build_missing_index=True)
    assert (tmp_path / "theirs.tfrecord.idx").exists()
    assert [source.read(i) for i in range(5)] == [folder.read(i) for i in range(5)]


def dali():
    return pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install 'fastload-images[dali]'")


def run_dali(graph, batch_size):
    from nvidia.dali import pipeline_def

    pipe = pipeline_def(graph, batch_size=batch_size, num_threads=1, device_id=None)()
    pipe.build()
    return pipe.run()


def test_dali_reads_our_tfrecords(shards, jpeg_folder):
    dali()
    import nvidia.dali.fn as fn
    import nvidia.dali.tfrecord as tfrec

    shard = shards / "tf" / "train-00000-of-00002.tfrecord"

    def graph():
        inp = fn.readers.tfrecord(path=[str(shard)], index_path=[str(shard) + ".idx"], features={
            "image/encoded": tfrec.FixedLenFeature((), tfrec.string, ""),
            "image/class/label": tfrec.FixedLenFeature([1], tfrec.int64, -1)})
        return fn.decoders.image(inp["image/encoded"], device="cpu"), inp["image/class/label"]

    images, labels = run_dali(graph, 19)
    folder = fl.FolderSource(jpeg_folder)
    for k in range(19):
        img = np.array(images[k])
        ref = folder.path(2 * k)
        assert int(np.array(labels[k])[0]) == folder.read(2 * k)[1]
        from PIL import Image

        assert img.shape == np.asarray(Image.open(ref)).shape
        if k < 4:  # DALI's decoder reads the restart markers: the original file's pixels
            from fastload.backends.torch.imaging import decode_rgb

            ours = decode_rgb(ref.read_bytes(), str(ref)).astype(int)
            assert np.abs(img.astype(int) - ours).mean() < 1.0


def test_dali_reads_our_lmdb(shards, jpeg_folder):
    dali()
    import nvidia.dali.fn as fn

    envs = sorted(str(p) for p in (shards / "lmdb").glob("*.lmdb"))

    def graph():
        jpegs, labels = fn.readers.caffe(path=envs)
        return jpegs, labels

    jpegs, labels = run_dali(graph, 19)
    folder = fl.FolderSource(jpeg_folder)
    for k in range(19):  # environment 0 holds samples 0, 2, 4, ... in key order
        assert np.array(jpegs[k]).tobytes() == with_restarts(folder.read(2 * k)[0])
        assert int(np.array(labels[k]).reshape(-1)[0]) == folder.read(2 * k)[1]


TF_CHECK = """
import sys, glob, tensorflow as tf
spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64)}
files = sorted(glob.glob(sys.argv[1] + "/*.tfrecord"))
n = 0
for ex in tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, spec)):
    img = tf.io.decode_image(ex["image/encoded"])
    assert img.shape[0] == ex["image/height"] and img.shape[1] == ex["image/width"], ex["image/filename"]
    n += 1
print("records", n)
"""


def test_tensorflow_tf_data_reads_our_shards(shards):
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow not installed: pip install 'fastload-images[interop]'")
    out = subprocess.run([sys.executable, "-c", TF_CHECK, str(shards / "tf")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "records 37" in out.stdout
