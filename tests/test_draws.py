"""Per-sample draws: torchvision's semantics, keyed by (seed, epoch, position)."""

import math

import numpy as np
import pytest

from fastload.ops import draws


def test_sample_rng_depends_only_on_seed_epoch_position():
    a = draws.sample_rng(1, 2, 3).random(4)
    assert np.array_equal(a, draws.sample_rng(1, 2, 3).random(4))
    for other in ((0, 2, 3), (1, 0, 3), (1, 2, 4)):
        assert not np.array_equal(a, draws.sample_rng(*other).random(4))


def test_crop_boxes_stay_inside_and_follow_scale_and_ratio():
    areas, ratios = [], []
    for pos in range(2000):
        top, left, h, w = draws.crop_box(draws.sample_rng(0, 0, pos), 300, 400, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 400 and h > 0 and w > 0
        areas.append(h * w / (300 * 400))
        ratios.append(w / h)
    assert 0.07 <= min(areas) and max(areas) <= 1.0
    assert abs(np.mean(areas) - _reference_mean_area(300, 400)) < 0.03
    # rounding to whole pixels widens the (3/4, 4/3) aspect range a little, never far
    assert 0.7 < min(ratios) and max(ratios) < 1.4


def _reference_mean_area(height, width, n=4000):
    """torchvision's RandomResizedCrop.get_params, written out independently, mean area fraction."""
    rng, out = np.random.default_rng(0), []
    for _ in range(n):
        for _ in range(10):
            area = height * width * rng.uniform(0.08, 1.0)
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < w <= width and 0 < h <= height:
                out.append(h * w / (height * width))
                break
        else:
            out.append(1.0)
    return float(np.mean(out))


def test_crop_falls_back_to_the_center_when_nothing_fits():
    # a 10x1000 strip cannot hold an aspect in [3/4, 4/3] of >= 50% area: center crop, ratio 4/3
    box = draws.crop_box(draws.sample_rng(0, 0, 0), 10, 1000, (0.5, 1.0), (3 / 4, 4 / 3))
    assert box == (0, (1000 - 13) // 2, 10, 13)


def test_flip_rate():
    flips = [draws.flip(draws.sample_rng(5, 0, i), 0.3) for i in range(4000)]
    assert abs(np.mean(flips) - 0.3) < 0.03


def test_erase_boxes_rate_area_and_bounds():
    boxes = [draws.erase_box(draws.sample_rng(0, 1, i), 224, 224, 0.25, (0.02, 0.33), (0.3, 3.3))
             for i in range(4000)]
    erased = [b for b in boxes if b[2] > 0]
    assert abs(len(erased) / len(boxes) - 0.25) < 0.03
    for top, left, h, w in erased:
        assert 0 <= top and top + h <= 224 and 0 <= left and left + w <= 224
        assert 0.02 * 0.9 <= h * w / 224 ** 2 <= 0.33 * 1.1
    logs = [math.log(h / w) for _, _, h, w in erased]
    assert abs(np.mean(logs) - (math.log(0.3) + math.log(3.3)) / 2) < 0.1


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_erase_probability_extremes(p):
    boxes = [draws.erase_box(draws.sample_rng(0, 0, i), 32, 32, p, (0.02, 0.33), (0.3, 3.3)) for i in range(200)]
    assert all((b[2] > 0) == (p == 1.0) for b in boxes)


def test_center_box_rounds_like_torchvision():
    assert draws.center_box(256, 341, (224, 224)) == (16.0, 58.0, 224.0, 224.0)
    assert draws.center_box(10, 10, (12, 12)) == (-1.0, -1.0, 12.0, 12.0)


def test_the_batch_generators_draw_as_sample_rng():
    """SampleRngs (the Philox keys of a whole batch at once, one re-keyed generator) draws
    exactly what sample_rng's fresh SeedSequence generators draw, for 32-bit and wider values."""
    from fastload.ops.draws import SampleRngs, sample_rng

    rng = np.random.default_rng(0)
    for seed in (0, 1, 2**32 - 1, 987654321, 2**40):
        for epoch in (0, 3, 2**32 - 1, 2**33):
            positions = np.concatenate([np.arange(5), rng.integers(0, 2**32, 20),
                                        [2**32 - 1]]).astype(np.int64)
            batch = SampleRngs(seed, epoch, positions)
            for k, position in enumerate(positions.tolist()):
                ours = batch.get(k)
                expected = sample_rng(seed, epoch, position)
                assert ours.random() == expected.random()
                assert ours.integers(0, 1000, 3).tolist() == expected.integers(0, 1000, 3).tolist()
                assert ours.random(2).tolist() == expected.random(2).tolist()
