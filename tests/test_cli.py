"""The fastload command, called as main([...])."""

import subprocess
import sys

from fastload.cli import main
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
