"""fastload convert / verify / index: determinism, resume, atomicity, re-encoding, bad input."""

import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

import fastload as fl
from fastload.errors import DecodeError, FormatError, SourceError, SpecError
from fastload.tools.cli import main
from fastload.tools.convert import PROGRESS, convert
from fastload.tools.verify import verify


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["tfrecord", "lmdb"])
def test_deterministic_output_and_a_manifest_that_verifies(jpeg_folder, tmp_path, fmt):
    a = convert(jpeg_folder, tmp_path / "a", format=fmt, shards=3, workers=2)
    b = convert(jpeg_folder, tmp_path / "b", format=fmt, shards=3, workers=1)
    assert a == b
    assert files(tmp_path / "a") == files(tmp_path / "b")  # byte-identical, LMDB included
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["samples"] == 37 and manifest["classes"] == ["class_00", "class_01", "class_02"]
    assert [s["records"] for s in manifest["shards"]] == [13, 12, 12]
    assert [s["file"] for s in manifest["shards"]][0] == f"train-00000-of-00003.{fmt}"
    report = verify(tmp_path / "a")
    assert report.ok and report.records == 37, report.summary()
    assert not (tmp_path / "a" / PROGRESS).exists()
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "a").rglob("*"))


def test_shard_size_and_re_encoding(photo_folder, tmp_path):
    total = sum(p.stat().st_size for p in photo_folder.rglob("*.jpg"))
    m = convert(photo_folder, tmp_path / "s", shard_bytes=total // 4 + 1)
    assert len(m.shards) == 4
    small = convert(photo_folder, tmp_path / "r", shards=2, max_size=64, quality=70)
    src = fl.open_source(tmp_path / "r")
    for i in range(len(src)):
        img = Image.open(io.BytesIO(src.read(i)[0]))
        assert img.format == "JPEG" and max(img.size) == 64
    assert sum(s.bytes for s in small.shards) < total / 4


def test_interrupted_run_resumes_without_redoing_finished_shards(tmp_path):
    from conftest import write_index_folder

    folder = write_index_folder(tmp_path / "src", 12, 2)
    bad = sorted((folder / "class_01").iterdir())[-1]  # sample 11 -> shard 11 % 4 = 3
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated JPEG
    with pytest.raises(DecodeError, match=rf"{bad.name} \(sample 11\): cannot decode image"):
        convert(folder, tmp_path / "out", shards=4, workers=1)
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists()
    done = sorted(p.name for p in out.glob("*.tfrecord"))
    assert done == [f"train-0000{k}-of-00004.tfrecord" for k in range(3)]
    assert not any(p.name.endswith(".tfrecord") and "00003" in p.name for p in out.iterdir())
    stamps = {name: os.stat(out / name).st_mtime_ns for name in done}
    bad.write_bytes(good)
    convert(folder, out, shards=4, workers=1)
    assert {name: os.stat(out / name).st_mtime_ns for name in done} == stamps
    assert verify(out).ok and len(fl.open_source(out)) == 12


def test_changed_input_restarts_and_existing_dataset_is_protected(jpeg_folder, tmp_path):
    convert(jpeg_folder, tmp_path / "o", shards=2)
    again = convert(jpeg_folder, tmp_path / "o", shards=2)  # same input and options: nothing to do
    assert again.samples == 37
    with pytest.raises(SourceError, match="already holds a converted dataset"):
        convert(jpeg_folder, tmp_path / "o", shards=3)


def test_verify_finds_damage(jpeg_folder, tmp_path):
    convert(jpeg_folder, tmp_path / "t", shards=2)
    shard = tmp_path / "t" / "train-00001-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[200] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify(tmp_path / "t")
    assert not report.ok and "sha256" in report.errors[0] and "00001" in report.errors[0]
    source = fl.open_source(tmp_path / "t")
    with pytest.raises(FormatError, match=r"train-00001-of-00002.tfrecord record 0 \(offset 0, sample 1\): data CRC mismatch"):
        source.read(1)
    convert(jpeg_folder, tmp_path / "l", format="lmdb", shards=2)
    manifest = json.loads((tmp_path / "l" / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64
    (tmp_path / "l" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="manifest.json: edited after conversion"):
        verify(tmp_path / "l")


@pytest.mark.parametrize("edit", ["swap shards", "drop a class", "version 1, swap shards",
                                  "version 1, swap classes"])
def test_an_edited_manifest_is_named_not_obeyed(jpeg_folder, tmp_path, edit):
    """Swapping two shard entries would re-map half the indices; dropping or swapping classes
    would change labels' names. The digest catches each; a manifest without one (version 1, or
    one edited to say so) is refused."""
    convert(jpeg_folder, tmp_path / "t", shards=2)
    path = tmp_path / "t" / "manifest.json"
    manifest = json.loads(path.read_text())
    if "swap shards" in edit:
        manifest["shards"].reverse()
    elif "swap classes" in edit:
        manifest["classes"][:2] = manifest["classes"][1::-1]
    else:
        manifest["classes"].pop()
    if "version 1" in edit:
        manifest["version"] = 1
        del manifest["digest"]
    path.write_text(json.dumps(manifest))
    message = "manifest.json: manifest version 1 carries no digest" if "version 1" in edit \
        else "manifest.json: edited after conversion"
    with pytest.raises(FormatError, match=message):
        fl.loader(tmp_path / "t", fl.Pipeline(fl.Decode(), fl.Resize(8), fl.CenterCrop(8)), 4)
    with pytest.raises(FormatError, match=message):
        verify(tmp_path / "t")


@pytest.mark.parametrize("setup, message", [
    (lambda p: (p / "c").mkdir(), "no image files"),
    (lambda p: None, "no class folders"),
])
def test_empty_inputs(tmp_path, setup, message):
    src = tmp_path / "src"
    src.mkdir()
    setup(src)
    with pytest.raises(SourceError, match=message):
        convert(src, tmp_path / "out")


def test_non_image_with_image_extension_is_named(tmp_path):
    (tmp_path / "src" / "c").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "c" / "a.png")
    (tmp_path / "src" / "c" / "b.jpg").write_text("hello, I am text")
    with pytest.raises(DecodeError, match=r"b\.jpg \(sample 1\): cannot decode image"):
        convert(tmp_path / "src", tmp_path / "out")


def test_unwritable_destination_and_bad_options(jpeg_folder, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SourceError, match="cannot write here"):
        convert(jpeg_folder, tmp_path / "file" / "out")
    with pytest.raises(SpecError, match="format='zip'"):
        convert(jpeg_folder, tmp_path / "o", format="zip")
    with pytest.raises(SpecError, match="quality=0"):
        convert(jpeg_folder, tmp_path / "o", quality=0)
    with pytest.raises(SpecError, match="not both"):
        convert(jpeg_folder, tmp_path / "o", shards=2, shard_bytes=100)


def test_cli_convert_verify_index(jpeg_folder, tmp_path, capsys):
    assert main(["convert", str(jpeg_folder), str(tmp_path / "o"), "--shards", "2", "--split", "val"]) == 0
    out = capsys.readouterr()
    assert "37 samples, 3 classes, 2 tfrecord shards" in out.out and "37/37 images" in out.err
    assert main(["verify", str(tmp_path / "o")]) == 0
    assert "OK" in capsys.readouterr().out
    shard = tmp_path / "o" / "val-00000-of-00002.tfrecord"
    idx = shard.with_name(shard.name + ".idx")
    expected = idx.read_text()
    idx.unlink()
    with pytest.raises(SourceError, match=r"no index file .*fastload index .*TFRecordSource\(path, build_missing_index=True\)"):
        fl.open_source(tmp_path / "o")
    assert main(["index", str(shard)]) == 0
    assert idx.read_text() == expected
    assert main(["convert", str(jpeg_folder), str(tmp_path / "x"), "--format", "lmdb",
                 "--shard-size", "1MB"]) == 0
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert "cannot read" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_follows_records_and_ends_once(photo_folder, tmp_path, workers):
    """One shard still moves the bar record by record (a terminal sees intermediate counts);
    the final count is shown once; a log file gets plain lines without carriage returns."""
    import fastload.tools.progress as progress

    tty = Terminal()
    old = progress.Progress.__init__

    def eager(self, *args, **kw):  # redraw on every record, so the test sees them all
        old(self, *args, **kw)
        self.every = 0.0

    progress.Progress.__init__ = eager
    try:
        convert(photo_folder, tmp_path / "a", shards=1, workers=workers, progress=tty)
    finally:
        progress.Progress.__init__ = old
    counts = [line.split("]")[1].split()[0] for line in tty.getvalue().split("\r") if "]" in line]
    assert counts[0] == "0/24" and counts[-1] == "24/24" and counts.count("24/24") == 1
    assert len(set(counts)) > 3 and tty.getvalue().endswith("\n")
    log = io.StringIO()
    convert(photo_folder, tmp_path / "b", shards=2, workers=workers, progress=log)
    assert "\r" not in log.getvalue() and log.getvalue().splitlines()[-1].count("24/24") == 1


def test_an_error_during_convert_starts_on_its_own_line(tmp_path, capsys):
    from conftest import write_index_folder

    root = write_index_folder(tmp_path / "d", 10, 2)
    (root / "class_01" / "img_00003.jpg").write_bytes(b"garbage")
    assert main(["convert", str(root), str(tmp_path / "out"), "--shards", "1",
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err
    error_line = next(line for line in err.split("\n") if "error:" in line)
    assert error_line.startswith("fastload convert: error:") and "img_00003.jpg" in error_line


def test_a_pool_worker_killed_mid_convert_fails_the_job_and_a_rerun_resumes(photo_folder,
                                                                           tmp_path, monkeypatch):
    """multiprocessing.Pool would wait forever for the lost shard; the executor notices."""
    import signal

    import fastload.tools.convert as fc

    write = fc._Job.__call__

    def dies_on_shard_2(self, job):
        if job[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        return write(self, job)

    monkeypatch.setattr(fc._Job, "__call__", dies_on_shard_2)
    with pytest.raises(fl.FastloadError, match=r"a worker process died .* writing .*"
                                               r"train-00002-of-00004\.tfrecord.*re-run"):
        convert(photo_folder, tmp_path / "o", shards=4, workers=2)
    assert not list((tmp_path / "o").glob(".*.tmp"))
    monkeypatch.setattr(fc._Job, "__call__", write)
    convert(photo_folder, tmp_path / "o", shards=4, workers=2)
    assert verify(tmp_path / "o").ok


@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB tmpfs: a real full disk (needs permission to mount; skipped without)."""
    import subprocess

    where = tmp_path / "small"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(where)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield where
    subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("fmt", ["tfrecord", "lmdb"])
def test_convert_on_a_full_disk_names_the_output_and_leaves_no_temporary(photo_folder,
                                                                         small_disk, fmt):
    size = sum(p.stat().st_size for p in photo_folder.rglob("*.jpg"))
    assert size > 96 * 1024  # the images do not fit
    with pytest.raises(fl.FastloadError, match=rf"convert: {small_disk}/out is full: writing "
                                               rf"train-0000\d-of-00002\.{fmt} needs about \d+ "
                                               r"bytes and \d+ are free"):
        convert(photo_folder, small_disk / "out", format=fmt, shards=2, workers=1)
    leftovers = [p.name for p in (small_disk / "out").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("format", ["tfrecord", "lmdb"])
def test_a_second_convert_into_the_same_folder_fails_at_once_naming_the_first(jpeg_folder,
                                                                               tmp_path, format):
    from fastload.tools.output import claimed

    dst = tmp_path / "out"
    dst.mkdir()
    with claimed(dst):  # a run in progress (this process)
        with pytest.raises(fl.SourceError, match=rf"out: another `fastload convert` is writing "
                                                 rf"here \(pid {os.getpid()} on "):
            convert(jpeg_folder, dst, format=format, shards=2, workers=1)
        assert not (dst / "manifest.json").exists()
    convert(jpeg_folder, dst, format=format, shards=2, workers=1)  # free again
    assert verify(dst).ok and not (dst / ".fastload-convert.lock").exists()


def test_two_convert_processes_at_once_never_report_success_over_a_missing_shard(jpeg_folder,
                                                                                 tmp_path):
    """Both started together: one writes, the other is refused naming it (or, started after
    the first finished, finds the same dataset done); every success is a whole dataset."""
    dst = tmp_path / "out"
    cmd = [sys.executable, "-m", "fastload", "convert", str(jpeg_folder), str(dst), "--format",
           "lmdb", "--shards", "4", "--workers", "1"]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    assert any(code == 0 for code, _ in results)
    for code, err in results:
        assert code == 0 or (code == 2 and "another `fastload convert` is writing here" in err)
    assert verify(dst).ok and len(fl.open_source(dst)) == 37


def test_temporaries_carry_the_run_and_a_killed_runs_are_swept(jpeg_folder, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / ".train-00000-of-00002.tfrecord.tmp").write_bytes(b"half")  # a killed run's
    (dst / ".train-00001-of-00002.lmdb.tmp-4242").mkdir()
    convert(jpeg_folder, dst, shards=2)
    assert sorted(p.name for p in dst.iterdir() if p.name.startswith(".")) == []
    assert verify(dst).ok
