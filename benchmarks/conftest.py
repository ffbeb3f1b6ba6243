"""Benchmarks (pytest-benchmark): `pytest benchmarks/` (not part of the plain `pytest` run).

Data: a generated folder of photographic-like JPEGs (~500x375, quality 90), made once per
session. Set the size with --bench-samples.
"""

import pytest


def pytest_addoption(parser):
    parser.addoption("--bench-samples", type=int, default=512, help="generated images (default 512)")


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory, request):
    from fastload.tools.synthetic import make_image_folder

    n = request.config.getoption("--bench-samples")
    return make_image_folder(tmp_path_factory.mktemp("bench") / "photos", n, classes=10, workers=2)
