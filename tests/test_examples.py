"""The examples run as users run them."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *args, timeout=300):
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_train_minimal_runs_both_loaders():
    out = run_example("train_minimal.py", "--steps", "3", "--workers", "1")
    assert "torch.utils.data.DataLoader: 3 steps" in out
    assert "fastload.loader: 3 steps, loss " in out


def test_the_sample_datasets_classes_show_in_the_images(tmp_path):
    """`fastload sample`'s classes are learnable: the mean colour alone tells them apart (a
    nearest-centroid rule, fitted on half, is right on the other half)."""
    from PIL import Image

    from fastload.tools.synthetic import make_image_folder

    root = make_image_folder(tmp_path / "s", 60, classes=6)
    src = __import__("fastload").FolderSource(root, index_file=None)
    means = np.stack([np.asarray(Image.open(src.path(i)).convert("RGB"), np.float32)
                      .mean((0, 1)) for i in range(len(src))])
    labels = np.asarray(src.labels)
    fit, test = np.arange(len(src)) % 2 == 0, np.arange(len(src)) % 2 == 1
    centroids = np.stack([means[fit & (labels == k)].mean(0) for k in range(6)])
    guess = np.argmin(((means[test, None] - centroids[None]) ** 2).sum(-1), 1)
    assert (guess == labels[test]).mean() >= 0.9


def test_convert_and_train_gives_identical_batches_from_every_source():
    out = run_example("convert_and_train.py", "--steps", "2")
    assert out.count("OK") == 2
    assert out.count("first batch identical to the folder's: True") == 3


def torchrun(*args, cwd, timeout=300):
    import os

    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}  # the ranks talk over loopback only
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(EXAMPLES / "train_ddp.py"), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_train_ddp_with_torchrun_and_resume(tmp_path):
    out = torchrun("--epochs", "2", cwd=tmp_path)
    for rank in (0, 1):
        for epoch in (0, 1):
            assert f"rank {rank}/2: epoch {epoch}: 4 batches (all ranks: 8)" in out
    evals = dict(re.findall(r"rank (\d): eval top-1 ([0-9.]+) over 120 samples, each once", out))
    assert sorted(evals) == ["0", "1"] and evals["0"] == evals["1"]  # exact, the same everywhere
    out = torchrun("--epochs", "2", "--stop-after", "6", cwd=tmp_path)
    assert "stopped at step 6" in out and (tmp_path / "ddp-checkpoint.pt").exists()
    out = torchrun("--epochs", "2", "--resume", "ddp-checkpoint.pt", cwd=tmp_path)
    assert "epoch 1: 2 batches (all ranks: 4)" in out  # the 2 batches left of epoch 1
