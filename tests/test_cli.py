"""The fastload command, called as main([...])."""

import subprocess
import sys

from fastload.tools.cli import main
from fastload.sources import FolderSource


def test_help_lists_the_commands(capsys):
    assert main([]) == 0
    assert "sample" in capsys.readouterr().out


def test_console_script_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "fastload", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: fastload" in out.stdout


def test_sample_writes_a_loadable_folder(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "d"), "--samples", "12", "--classes", "4"]) == 0
    src = FolderSource(tmp_path / "d")
    assert len(src) == 12 and len(src.classes) == 4
    assert "wrote 12" in capsys.readouterr().out


def test_version_names_the_distribution(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("fastload ") and "fastload-images" in out


def test_index_of_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["index", str(tmp_path / "nope.tfrecord")]) == 2
    err = capsys.readouterr().err
    assert "nope.tfrecord: no such TFRecord file" in err and "Traceback" not in err


def test_sample_says_whether_it_generates_or_reuses(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "d"), "--samples", "20", "--classes", "2"]) == 0
    assert "generating 20 photographic-like JPEGs" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "d"), "--samples", "20", "--classes", "2"]) == 0
    err = capsys.readouterr().err
    assert "reusing the 20 JPEGs" in err and "generating" not in err


def test_verify_of_a_plain_folder_says_to_convert_first(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "d"), "--samples", "4", "--classes", "2"]) == 0
    assert main(["verify", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "no manifest.json here: verify checks what `fastload convert` wrote" in err
    assert f"fastload convert {tmp_path / 'd'} <shards folder>" in err


def test_help_shows_the_defaults(capsys):
    import pytest

    for command, shown in (("bench", ["images per batch (default: 64)", "(default: 0.0)",
                                      "epochs per run (default: 1)",
                                      "(default: imagenet_train)"]),
                           ("convert", ["output format (default: tfrecord)",
                                        "shard name prefix (default: train)"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert all(s in out for s in shown), (command, out)
