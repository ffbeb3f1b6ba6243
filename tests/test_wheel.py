"""The project as a user installs it: a wheel built from the checkout, in a fresh venv."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd, cwd=None, timeout=900):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd,
                         timeout=timeout)
    assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-3000:])
    return out


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_main_job(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "wheels", ROOT)
    (wheel,) = (tmp_path / "wheels").glob("fastload_images-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"  # the build this machine has
    run(venv / "bin" / "pip", "install", "-q", torch_pin, wheel)
    version = run(venv / "bin" / "fastload", "--version").stdout
    assert "fastload-images" in version
    out = run(venv / "bin" / "fastload", "bench", "--synthetic", "200", "--synthetic-dir",
              tmp_path / "data", "--backend", "torch", "--workers", "2", "--batch-size", "32",
              cwd=tmp_path)
    assert "ratio torch/baseline" in out.stdout
    # the installed package, not this checkout, ran
    where = run(venv / "bin" / "python", "-c", "import fastload, fastload._kernels; "
                "print(fastload.__file__)", cwd=tmp_path).stdout
    assert str(venv) in where
