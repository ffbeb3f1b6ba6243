"""Sampling and mixing: weighted draws, class balance and mixtures as the epoch's order, a
function of (seed, epoch); statistics checked, not eyeballed; bad input named when the loader
is made."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

import fastload as fl
from fastload.order.mixture import MixtureOrder, counts
from fastload.order.sampling import resolve
from fastload.order.sharding import shard

UINT8 = fl.Pipeline(fl.Decode(), fl.Resize((8, 8)))


def draws(sampling, size, labels=None):
    return resolve(sampling, size, lambda: labels)


def test_the_worked_examples_of_the_docstrings():
    d = draws(fl.Weighted([0, 1, 3], num_samples=4), 3)
    order = d.order(3, 0)
    assert order.tolist() == [1, 2, 2, 2]
    assert shard(4, batch_size=2, rank=0, world=2, order=order).indices.tolist() == [1, 2]
    assert shard(4, batch_size=2, rank=1, world=2, order=order).indices.tolist() == [2, 2]
    mix = MixtureOrder((4, 2), tuple(counts([0.5, 0.5], 6)))
    assert mix.counts == (3, 3)
    assert mix.order(0, 0).tolist() == [5, 1, 0, 4, 5, 3]
    assert mix.order(0, 1).tolist() == [4, 2, 4, 2, 5, 3]


def test_weighted_frequencies_fall_within_binomial_bounds_over_many_epochs():
    weights = np.arange(20, dtype=float)  # sample 0 never, sample 19 the most
    d = draws(fl.Weighted(weights, num_samples=50), 20)
    epochs = 400
    seen = np.bincount(np.concatenate([d.order(7, e) for e in range(epochs)]), minlength=20)
    n, p = 50 * epochs, weights / weights.sum()
    assert seen[0] == 0
    sigma = np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(seen - n * p) <= 4.5 * sigma + 1), (seen, n * p)
    assert not np.array_equal(d.order(7, 0), d.order(7, 1))  # set_epoch: new draws
    assert np.array_equal(d.order(7, 3), d.order(7, 3))  # a function of (seed, epoch)


def test_without_replacement_no_sample_repeats_and_zero_weights_are_never_drawn():
    weights = np.ones(30)
    weights[[4, 9]] = 0
    d = draws(fl.Weighted(weights, replacement=False), 30)
    assert d.num_samples == 28  # default: every sample with a weight
    for epoch in range(20):
        order = d.order(1, epoch)
        assert len(set(order.tolist())) == 28 and not {4, 9} & set(order.tolist())
    heavy = np.r_[np.full(5, 50.0), np.ones(45)]  # the first draw is heavy w.p. 250 / 295
    d = draws(fl.Weighted(heavy, num_samples=10, replacement=False), 50)
    epochs, p = 400, 250 / 295
    first_heavy = np.mean([d.order(2, e)[0] < 5 for e in range(epochs)])
    assert abs(first_heavy - p) <= 4.5 * math.sqrt(p * (1 - p) / epochs)
    assert all(len(set(d.order(2, e))) == 10 for e in range(20))


def test_class_balance_gives_near_equal_class_counts_on_a_100_to_1_set():
    labels = np.r_[np.zeros(1000, np.int64), np.ones(10, np.int64)]
    d = draws(fl.ClassBalanced(), len(labels), labels)
    drawn = labels[np.concatenate([d.order(0, e) for e in range(20)])]
    share = np.mean(drawn == 1)
    n = len(drawn)
    assert abs(share - 0.5) <= 4.5 * math.sqrt(0.25 / n)
    plain = draws(fl.ClassBalanced(power=0.0), len(labels), labels)
    assert abs(np.mean(labels[plain.order(0, 0)] == 1) - 10 / 1010) < 0.02


@pytest.mark.parametrize("sampling, message", [
    (fl.Weighted([1, -1, 2, 1]), r"weight -1.0 of sample 1 \(and 0 more\) must be finite and >= 0"),
    (fl.Weighted([1, float("nan"), 2, 1]), r"weight nan of sample 1"),
    (fl.Weighted([1, float("inf"), 2, 1]), r"weight inf of sample 1"),
    (fl.Weighted([0, 0, 0, 0]), r"every weight is 0"),
    (fl.Weighted([1, 2, 3]), r"3 weights for a source of 4 samples"),
    (fl.Weighted([1, 0, 0, 1], num_samples=3, replacement=False),
     r"num_samples=3 without replacement, but only 2 samples have a weight > 0"),
    (fl.Weighted([1, 1, 1, 1], num_samples=0), r"num_samples=0 must be an int >= 1"),
    (fl.ClassBalanced(power=-1), r"ClassBalanced: power=-1 must be a finite number >= 0"),
    ("weights", r"sampling='weights' must be fl.Weighted"),
])
def test_bad_sampling_is_named(sampling, message):
    with pytest.raises(fl.SpecError, match=message):
        draws(sampling, 4, np.zeros(4, np.int64))


def test_mixture_proportions_are_exact_and_each_component_is_read_pass_by_pass():
    mix = MixtureOrder((7, 3, 50), tuple(counts([0.5, 0.3, 0.2], 40)))
    assert mix.counts == (20, 12, 8) and mix.num_samples == 40
    offsets = [0, 7, 10, 60]
    streams = {k: [] for k in range(3)}
    for epoch in range(6):
        order = mix.order(4, epoch)
        comp = np.searchsorted(offsets[1:], order, side="right")
        assert np.bincount(comp, minlength=3).tolist() == [20, 12, 8]  # exact, every epoch
        for k in range(3):  # a component's picks are read in its stream's order
            streams[k].extend((order[comp == k] - offsets[k]).tolist())
        # evenly interleaved: any stretch of 10 reads holds each component within 2 of its share
        for start in range(0, 31):
            window = np.bincount(comp[start:start + 10], minlength=3)
            assert np.all(np.abs(window - np.array([5, 3, 2])) <= 2)
    for k, size in enumerate((7, 3, 50)):  # without replacement: each pass holds each sample once
        stream = streams[k]
        for p in range(0, len(stream), size):
            part = stream[p:p + size]
            assert len(set(part)) == len(part) and (len(part) < size or sorted(part) ==
                                                    list(range(size)))
    assert len(streams[0]) == 120 and len(streams[2]) == 48  # 17 passes of 7; under one of 50


def write_folder(root, classes, per_class, colour=0):
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.new("RGB", (8, 8), (colour, k, 0)).save(root / c / f"{k:03d}.jpg")
    return root


def test_a_mix_maps_labels_by_class_name_and_says_where_each_sample_came_from(tmp_path):
    a = fl.FolderSource(write_folder(tmp_path / "a", ["cat", "dog"], 6), index_file=None)
    b = fl.FolderSource(write_folder(tmp_path / "b", ["bird", "dog"], 4, 200), index_file=None)
    mix = fl.Mix([(a, 0.75), (b, 0.25)], epoch_size=16)
    assert mix.classes == ["bird", "cat", "dog"] and len(mix) == 20
    assert mix.read(0)[1] == 1 and mix.read(6)[1] == 2  # a's cat, a's dog
    assert mix.read(12)[1] == 0 and mix.read(19)[1] == 2  # b's bird, b's dog
    assert mix.labels.tolist() == [1] * 6 + [2] * 6 + [0] * 4 + [2] * 4
    assert "Mix component 1, sample 12" in mix.locate(12)
    with fl.loader(mix, UINT8, 4, num_workers=0) as loader:
        batches = list(loader)
        assert len(loader) == 4
    indices = torch.cat([b.indices for b in batches])
    sources = torch.cat([b.source for b in batches])
    assert torch.equal(sources, (indices >= 12).long())
    assert int((sources == 0).sum()) == 12 and int((sources == 1).sum()) == 4  # exact
    labels = torch.cat([b.labels for b in batches])
    assert labels.tolist() == [int(mix.labels[i]) for i in indices.tolist()]
    # b's images are red (200): the batch really holds b's pixels where source says 1
    red = torch.cat([b.images for b in batches])[:, 0].float().mean(dim=(1, 2))
    assert torch.equal(red > 100, sources == 1)


@pytest.mark.parametrize("make, message", [
    (lambda a, b: fl.Mix([(a, 0.7), (b, 0.7)]), r"sum to 1.4, not 1; they are not normalized"),
    (lambda a, b: fl.Mix([(a, 1.0), (b, 0.0)]), r"component 1's proportion 0.0 must be a number > 0"),
    (lambda a, b: fl.Mix([(a, 0.5), (b, 0.5)], epoch_size=0), r"epoch_size=0 must be an int >= 1"),
    (lambda a, b: fl.Mix([]), r"give at least one"),
    (lambda a, b: fl.Mix([(a, 0.5), (Unnamed(3), 0.5)]), r"component\(s\) \[1\] have no class names"),
    (lambda a, b: fl.Mix([(a, 0.5), (Unnamed(0), 0.5)]), r"component 1 .* is empty"),
])
def test_bad_mixtures_are_named_when_made(tmp_path, make, message):
    a = fl.FolderSource(write_folder(tmp_path / "a", ["x"], 3), index_file=None)
    b = fl.FolderSource(write_folder(tmp_path / "b", ["y"], 3), index_file=None)
    with pytest.raises(fl.SpecError, match=message):
        make(a, b)


class Unnamed:
    """A user source without class names."""

    def __init__(self, n, data=b""):
        self.n, self.data = n, data

    def __len__(self):
        return self.n

    def read(self, i):
        return self.data, 0

    def describe(self):
        return {"kind": "unnamed", "samples": self.n}

    def locate(self, i):
        return f"unnamed[{i}]"


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "data", ["a", "b", "c"], 7)


def indices(loader):
    return [b.indices.tolist() for b in loader]


def test_weighted_batches_follow_the_draws_for_any_worker_count_and_resume(folder):
    weights = np.arange(21, dtype=float) % 5
    sampling = fl.Weighted(weights, num_samples=30)
    with fl.loader(folder, UINT8, 4, sampling=sampling, seed=2, num_workers=0) as ld:
        loader_len = len(ld)
        plain = [indices(ld) for _ in range(2)]  # epochs 0 and 1
        state = None
    order = draws(sampling, 21).order(2, 0)
    assert sum(plain[0], []) == order.tolist() and loader_len == 8
    assert plain[0] != plain[1]
    with fl.loader(folder, UINT8, 4, sampling=sampling, seed=2, num_workers=2) as ld:
        it = iter(ld)
        taken = [next(it).indices.tolist() for _ in range(3)]
        state = ld.state_dict()
        assert taken + [b.indices.tolist() for b in it] == plain[0]  # any worker count
    assert state["sampling"]["kind"] == "weighted" and state["position"] == 12
    with fl.loader(folder, UINT8, 4, sampling=sampling, num_workers=1) as ld:
        ld.load_state_dict(state)
        assert taken + indices(ld) == plain[0]
    with fl.loader(folder, UINT8, 4, sampling=fl.Weighted(weights, num_samples=31)) as ld:
        with pytest.raises(fl.SpecError, match="the state was drawn with sampling="):
            ld.load_state_dict(state)


def test_class_balanced_reads_a_folders_labels_without_its_images(folder, monkeypatch):
    monkeypatch.setattr(fl.FolderSource, "read", lambda *a: pytest.fail("read an image"))
    with fl.loader(folder, UINT8, 3, sampling=fl.ClassBalanced(num_samples=9)) as ld:
        assert len(ld) == 3 and ld.state_dict()["sampling"]["kind"] == "class_balanced"


def test_a_weighted_random_sampler_is_mapped_and_other_samplers_are_refused(folder):
    weights = torch.tensor([0.0] * 7 + [1.0] * 14)
    sampler = torch.utils.data.WeightedRandomSampler(weights, 10, replacement=True,
                                                     generator=torch.Generator().manual_seed(5))
    with fl.loader(folder, UINT8, 5, sampler=sampler) as ld:
        got = indices(ld)
    mapped = draws(fl.Weighted(weights.numpy(), 10), 21).order(5, 0)
    assert sum(got, []) == mapped.tolist() and min(mapped) >= 7
    with pytest.raises(fl.SpecError, match=r"sampler= is a DataLoader keyword without a "
                                           r"meaning here \(a SequentialSampler; .*sampling="
                                           r"fl.Weighted"):
        fl.loader(folder, UINT8, 5, sampler=torch.utils.data.SequentialSampler(range(21)))
    with pytest.raises(fl.SpecError, match="give sampling= or sampler="):
        fl.loader(folder, UINT8, 5, sampler=sampler, sampling=fl.Weighted(weights))
    with pytest.raises(fl.SpecError, match="the sampler's generator gives the seed"):
        fl.loader(folder, UINT8, 5, sampler=sampler, seed=1)


def test_sampling_refuses_what_would_change_its_order(folder):
    with pytest.raises(fl.SpecError, match="shuffle=True with sampling=: its draws are the "
                                           "epoch's order"):
        fl.loader(folder, UINT8, 4, sampling=fl.ClassBalanced(), shuffle=True)
    mix = fl.Mix([(folder, 1.0)])
    with pytest.raises(fl.SpecError, match="sampling= with a fl.Mix source"):
        fl.loader(mix, UINT8, 4, sampling=fl.ClassBalanced())
    pytest.importorskip("nvidia.dali", reason="DALI not installed")
    with pytest.raises(fl.SpecError, match="backend='dali-native' reads in DALI's own order"):
        fl.loader(mix, UINT8, 4, backend="dali-native")


def test_the_dali_backend_reads_the_same_weighted_batches(folder):
    pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install "
                                              "'fastload-images[dali]'")
    sampling = fl.Weighted(np.arange(21) % 3, num_samples=12)
    got = {}
    for backend in ("torch", "dali"):
        with fl.loader(folder, UINT8, 4, sampling=sampling, backend=backend, num_workers=1,
                       seed=4) as ld:
            got[backend] = indices(ld)
    assert got["torch"] == got["dali"] and sum(got["dali"], []) == \
        draws(sampling, 21).order(4, 0).tolist()
