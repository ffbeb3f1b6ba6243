#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what the GPU check needs on the device machine, which has
# python3.12 + torch (CUDA 13) but nothing of fastload's and cannot reach the package index:
#   .whl/       fastload's dependencies as cp312 wheels (~1 MB; carried on the first call)
#   .dali/NN    DALI's CUDA 13 wheel (~199 MB) cut into 48 MiB pieces (a call carries 64 MiB
#               at most: one piece per call, appended to /tmp/dali.whl on the warm machine)
# Both folders are ignored by git (.git/info/exclude). The calls, in order, each within the
# 30 s the machine stays warm (see benchmarks/README.md, "GPU check"):
#   run(carry=[".dali/00"], command="cat .dali/00 > /tmp/dali.whl")
#   run(carry=[".dali/01"], command="cat .dali/01 >> /tmp/dali.whl")   ... for each piece
#   run(carry=[".whl"], timeout_s=560, command="bash benchmarks/gpu_run.sh")
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
grep -qx '/.dali/' .git/info/exclude || echo '/.dali/' >> .git/info/exclude
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64)
rm -rf .whl .dali && mkdir -p .whl .dali
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl lmdb tfrecord crc32c simplejpeg
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d /tmp/fastload-dali nvidia-dali-cuda130==2.4.0
split -b 48M -d /tmp/fastload-dali/nvidia_dali_cuda130-*.whl .dali/
ls -la .whl .dali
