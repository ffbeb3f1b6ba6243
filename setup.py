"""fastload's three optional C extensions; everything else is declared in pyproject.toml.

- ``fastload._jpeg``: region-of-interest JPEG decoding against libjpeg-turbo. Built only where
  its headers are (Debian/Ubuntu: ``apt install libjpeg-dev``); without it, JPEGs are decoded
  whole with simplejpeg.
- ``fastload._kernels``: antialiased resize straight into the batch (torch's arithmetic, only
  the output window computed), the CPU device tail (normalize + erasing) in one pass, and the
  nearest-neighbour affine of TrivialAugment / RandAugment; without it, torch's
  ``interpolate`` and numpy do the same, slower.
- ``fastload.formats._wire``: the image and label of a tf.train.Example found without
  parsing the rest (~1 us instead of ~30 us in Python); without it, ``protowire`` parses.

A failed build of either leaves a working, slower, pure-Python install.
"""

from setuptools import Extension, setup

FLAGS = ["-O3", "-ffp-contract=off"]  # vectorize; no fused multiply-add (bit-exact with numpy)

setup(ext_modules=[
    Extension("fastload._jpeg", ["fastload/_jpeg.c"], libraries=["jpeg"],
              extra_compile_args=FLAGS, optional=True),
    Extension("fastload._kernels", ["fastload/_kernels.c"], extra_compile_args=FLAGS,
              optional=True),
    Extension("fastload.formats._wire", ["fastload/formats/_wire.c"], extra_compile_args=FLAGS,
              optional=True),
])
