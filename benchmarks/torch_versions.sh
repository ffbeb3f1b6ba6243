#!/usr/bin/env bash
# The oldest and the newest torch that pyproject.toml admits (torch>=2.1; pip here is capped at
# 2.14.1), each in a venv of its own under /tmp, running the test suite without the slow tests
# and without DALI (whose wheel pins no torch). CI runs the suite on 2.13.0 (CPU build); this
# is the documented check for the ends of the range (~2 GB download each, ~5 min each here).
#   bash benchmarks/torch_versions.sh            # both
#   bash benchmarks/torch_versions.sh 2.1.2      # one
set -euo pipefail
cd "$(dirname "$0")/.."
versions=("${@:-2.1.2 2.14.1}")
for version in ${versions[@]}; do
    venv=/tmp/fastload-torch-$version
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        numpy=$(python3 -c "v = tuple(map(int, '$version'.split('.')[:2])); print('numpy<2' if v < (2, 3) else 'numpy')")
        "$venv/bin/python" -m pip install -q "torch==$version" "$numpy" pillow lmdb tfrecord \
            crc32c simplejpeg pytest hypothesis pytest-benchmark matplotlib
    fi
    echo "== torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
    PYTHONPATH="$PWD" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests -m "not slow" \
        | tail -3
done
