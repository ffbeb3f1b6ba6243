"""The examples run as users run them."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *args, timeout=300):
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_train_minimal_runs_both_loaders():
    out = run_example("train_minimal.py", "--steps", "3", "--workers", "1")
    assert "torch.utils.data.DataLoader: 3 steps" in out
    assert "fastload.loader: 3 steps" in out


def test_convert_and_train_gives_identical_batches_from_every_source():
    out = run_example("convert_and_train.py", "--steps", "2")
    assert out.count("OK") == 2
    assert out.count("first batch identical to the folder's: True") == 3
