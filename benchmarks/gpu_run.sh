#!/usr/bin/env bash
# On the device machine (see gpu_prepare.sh): install fastload and its wheels into /tmp/site
# (DALI too when /tmp/dali.whl arrived whole), then run the GPU check; its JSON lands in $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
if [ -s /tmp/dali.whl ]; then
    cp /tmp/dali.whl /tmp/nvidia_dali_cuda130-2.4.0-py3-none-manylinux_2_28_x86_64.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        /tmp/nvidia_dali_cuda130-2.4.0-py3-none-manylinux_2_28_x86_64.whl || echo "DALI did not install"
fi
export PYTHONPATH=/tmp/site:$PWD
python3 setup.py -q build_ext --inplace 2>&1 | tail -3 || true   # optional C extensions
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_check.py "$@" 2>&1 | tee "${OUT:-.}/gpu_check.log"
