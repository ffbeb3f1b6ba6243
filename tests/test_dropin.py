"""The DataLoader surface: code written for ``torch.utils.data.DataLoader`` runs on a fastload
loader with only the constructor changed; and the checks that save a run."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastload as fl

EVAL = fl.Pipeline(fl.Decode(), fl.Resize((16, 16)), fl.Normalize())
TRAIN = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(16), fl.RandomFlip(), fl.Normalize())


def test_dataloader_attributes(jpeg_folder):
    with fl.loader(jpeg_folder, TRAIN, 8, True, num_workers=1, drop_last=True,
                   prefetch_factor=3, timeout=30, pin_memory=False) as ld:
        assert ld.plan.shuffle is True  # shuffle is DataLoader's third argument here too
        assert len(ld.dataset) == 37 and ld.dataset is ld.source
        assert (ld.batch_size, ld.num_workers, ld.drop_last, ld.prefetch_factor) == (8, 1, True, 3)
        assert (ld.timeout, ld.pin_memory, ld.persistent_workers) == (30, False, True)
        assert len(ld) == 37 // 8
        order = list(ld.sampler)
        assert len(ld.sampler) == 32 and len(set(order)) == 32
        assert order == torch.cat([b.indices for b in ld]).tolist()  # the order read
        ld.sampler.set_epoch(5)  # DistributedSampler's habit
        assert ld.epoch == 5 and list(ld.sampler) != order
    with fl.loader(jpeg_folder, EVAL, 8) as ld:
        assert ld.drop_last is False and list(ld.sampler) == list(range(37))


def test_batch_to_moves_images_and_labels(jpeg_folder):
    with fl.loader(jpeg_folder, EVAL, 4) as ld:
        batch = next(iter(ld))
    moved = batch.to("cpu", non_blocking=True)
    images, labels = moved
    assert torch.equal(images, batch.images) and torch.equal(labels, batch.labels)
    assert moved.indices is batch.indices and isinstance(moved, fl.Batch)
    assert batch.to(torch.float64).images.dtype == torch.float64


def train_and_evaluate(make_loader, classes):
    """A typical DataLoader script: train a small model 2 epochs, then evaluate."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train, val = make_loader(True), make_loader(False)
    losses = []
    for epoch in range(2):
        if hasattr(train.sampler, "set_epoch"):
            train.sampler.set_epoch(epoch)
        model.train()
        for images, labels in train:
            images, labels = images.to("cpu", non_blocking=True), labels.to("cpu")
            loss = F.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for images, labels in val:
            correct += (model(images).argmax(1) == labels).sum().item()
            seen += len(labels)
    assert seen == len(val.dataset) and len(train) == -(-len(train.dataset) // train.batch_size)
    return losses, correct / seen


def test_a_dataloader_training_script_runs_with_only_the_constructor_changed(jpeg_folder):
    loaders = []

    def make(train):
        made = fl.loader(jpeg_folder, TRAIN if train else EVAL, 8, train, num_workers=1)
        loaders.append(made)
        return made
    try:
        losses, accuracy = train_and_evaluate(make, 3)
    finally:
        for made in loaders:
            made.close()
    assert len(losses) == 2 * 5 and all(np.isfinite(losses)) and 0 <= accuracy <= 1


def test_normalize_in_0_255_units_is_named_with_the_fix():
    with pytest.raises(fl.SpecError, match=r"look like 0-255 values.*pass mean=\(0.4851, 0.4561, "
                                           r"0.4059\), std=\(0.229, 0.2239, 0.2251\)"):
        fl.Normalize(mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    assert fl.Normalize(mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0)).std == (1.0, 1.0, 1.0)


def test_a_geometry_op_out_of_place_is_named():
    with pytest.raises(fl.SpecError, match=r"RandomResizedCrop \(item 2\) is out of place: "
                                           "geometry ops come right after Decode"):
        fl.Pipeline(fl.Decode(), fl.Normalize(), fl.RandomResizedCrop(64))


def test_torchs_worker_count_warning_is_shown_once(jpeg_folder):
    import os
    import warnings

    many = len(os.sched_getaffinity(0)) + 2
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        with fl.loader(jpeg_folder, EVAL, 8, num_workers=many) as ld:
            for _ in ld:
                pass
    assert sum("will create" in str(w.message) for w in got) == 1
