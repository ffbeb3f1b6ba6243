#!/usr/bin/env bash
# The peers benchmarks' own environment (issues 16, 26): FFCV, NVIDIA DALI, SPDL, torchvision,
# webdataset and datasets in
# .venv-peers (git-ignored), never in fastload's. Debian packages: FFCV builds against OpenCV and
# libturbojpeg, SPDL's decoder loads FFmpeg's libraries.
#   bash benchmarks/peers_setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-peers}
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q pkg-config libopencv-dev libturbojpeg0-dev \
    libavdevice59 libavfilter8 >/dev/null
fi
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip wheel setuptools
"$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 numpy simplejpeg
"$VENV/bin/pip" install -q nvidia-dali-cuda120 spdl
"$VENV/bin/pip" install -q --no-build-isolation ffcv==1.0.2 || "$VENV/bin/pip" install -q ffcv==1.0.2
"$VENV/bin/pip" install -q -e . --no-deps
"$VENV/bin/pip" install -q tfrecord lmdb crc32c webdataset datasets pyarrow
"$VENV/bin/python" -c "import ffcv, spdl.io, nvidia.dali, torchvision, fastload; print('peers env ready')"
