"""``backend="dali-native"``: an explicit opt-in to DALI's own readers (faster on few cores).

What changes against ``backend="dali"`` (documented in the README):

- Order: DALI's readers shard (``shard_id=rank, num_shards=world, pad_last_batch=True,
  stick_to_shard=True``: each rank keeps its contiguous shard every epoch) and shuffle (a
  shuffle buffer seeded by ``seed``) on their own, so the order differs from fastload's sharding
  and from the torch backend, and ``set_epoch`` does not choose it. Rank and world size are
  read once, when the loader is made.
- Crops and flips come from DALI's random generators (``image_random_crop``, ``coin_flip``).
- Each rank reads ``ceil(N / world)`` samples per epoch (``last_batch="partial"`` is the only
  policy); the repeats DALI adds to even out shards are marked in ``batch.padded``.
- No mid-epoch resume: ``load_state_dict`` of a mid-epoch state is an error.

Normalize runs in DALI's ``crop_mirror_normalize``; erasing in the shared device tail.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from ...batch import Batch, HostBatch
from ...errors import SpecError
from ...ops.draws import sample_rng, erase_box
from ...ops.spec import Pipeline
from ...options import LoaderOptions
from ...sources import FolderSource, LMDBSource, TFRecordSource
from ...sources.base import Source
from ..buffers import BufferPool
from ..tail import Tail, apply_tail
from .producer import dali_to_torch, normalize_arguments, output_dtype


def _reader(source: Source, shuffle: bool, seed: int, rank: int, world: int) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.tfrecord as tfrec

    shard = dict(shard_id=rank, num_shards=world, pad_last_batch=True, stick_to_shard=True,
                 random_shuffle=shuffle, seed=seed, name="reader")
    if isinstance(source, FolderSource):
        files = [str(source.path(i)) for i in range(len(source))]
        return fn.readers.file(files=files, labels=source.labels.astype(np.int32).tolist(), **shard)
    if isinstance(source, TFRecordSource):
        if source.has_targets:
            raise SpecError("backend='dali-native' reads an image and one label a record; this "
                            "TFRecordSource carries targets (a label list, masks, boxes or "
                            "fields): use backend='dali', which feeds them through its geometry")
        out = fn.readers.tfrecord(
            path=source.shards, index_path=[f"{s}.idx" for s in source.shards],
            features={source.image_key: tfrec.FixedLenFeature((), tfrec.string, ""),
                      source.label_key: tfrec.FixedLenFeature([1], tfrec.int64, -1)}, **shard)
        return out[source.image_key], out[source.label_key]
    if isinstance(source, LMDBSource):
        return fn.readers.caffe(path=source.envs, **shard)
    raise SpecError(f"backend='dali-native' reads folders, TFRecord and LMDB sources with DALI's "
                    f"readers; {type(source).__name__} has none: use backend='dali'")


def _graph(source: Source, pipeline: Pipeline, gpu: bool, shuffle: bool, seed: int, rank: int,
           world: int) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    jpegs, labels = _reader(source, shuffle, seed, rank, world)
    device = "mixed" if gpu else "cpu"
    geometry = pipeline.geometry
    crop: dict[str, Any] = {}
    if geometry.random_crop is not None:
        scale, ratio = geometry.random_crop
        images = fn.decoders.image_random_crop(jpegs, device=device, output_type=types.RGB,
                                               random_area=list(scale), random_aspect_ratio=list(ratio),
                                               num_attempts=10, adjust_orientation=False)
        images = fn.resize(images, size=list(geometry.output_size), antialias=True)
    else:
        images = fn.decoders.image(jpegs, device=device, output_type=types.RGB,
                                   adjust_orientation=False)
        if geometry.resizes:
            if isinstance(geometry.resize, tuple):
                resize: dict[str, Any] = {"size": list(geometry.resize)}
            elif geometry.resize is None:
                resize = {"resize_longer": geometry.resize_max}
            else:
                resize = {"resize_shorter": geometry.resize,
                          **({"max_size": geometry.resize_max} if geometry.resize_max else {})}
            images = fn.resize(images, antialias=True, **resize)
        if geometry.crop is not None:
            crop = {"crop": list(geometry.crop), "out_of_bounds_policy": "pad"}
    mirror = fn.random.coin_flip(probability=pipeline.flip.p) if pipeline.flip else 0
    images = fn.crop_mirror_normalize(images, mirror=mirror, output_layout="CHW", **crop,
                                      **normalize_arguments(pipeline))
    if isinstance(source, FolderSource):
        return images, labels, fn.get_property(jpegs, key="source_info")
    return images, labels


class DaliNativeProducer:
    """Runs DALI's readers; yields exactly the batch count of fastload's ``partial`` sharding."""

    resumable = False  # DALI's readers keep their own position

    def __init__(self, source: Source, pipeline: Pipeline, options: LoaderOptions, *,
                 device: torch.device, rank: int, world: int) -> None:
        from nvidia.dali import pipeline_def

        batch_size, num_workers = options.batch_size, options.num_workers
        prefetch_factor, shuffle, seed = options.prefetch_factor, options.shuffle, options.seed

        self.gpu = device.type == "cuda"
        self.source, self.pipeline, self.world, self.rank = source, pipeline, world, rank
        self._tail = Tail(pipeline, device, normalized_input=True)
        self._pool = BufferPool((options.batch_size, 3, *pipeline.output_size),
                                output_dtype(pipeline), keep=6)  # CPU outputs
        self._index = {str(source.path(i)): i for i in range(len(source))} \
            if isinstance(source, FolderSource) else None
        self._pipe: Optional[Any] = pipeline_def(
            _graph, batch_size=batch_size, num_threads=max(1, num_workers),
            device_id=device.index if self.gpu else None, prefetch_queue_depth=prefetch_factor,
            seed=seed)(source, pipeline, self.gpu, shuffle, seed, rank, world)
        self._pipe.build()
        n = len(source)
        self._shard_size = (n * (rank + 1)) // world - (n * rank) // world  # DALI's shard rule

    def batches(self, tasks: list[Any], seed: int, epoch: int,
                following: Optional[Callable[[], list[Any]]] = None) -> Iterator[Batch]:
        """The batches of ``tasks``; ``following`` (the next epoch's tasks) is not used: DALI
        runs one epoch at a time."""
        if self._pipe is None:
            raise RuntimeError("this loader was closed")
        return apply_tail(self._run(tasks, seed, epoch), self._tail)

    def _run(self, tasks: list[Any], seed: int, epoch: int) -> Iterator[HostBatch]:
        done = 0
        for task in tasks:
            outputs = self._pipe.run()
            images, labels = outputs[0], outputs[1]
            count = len(task.indices)
            out = dali_to_torch(images, (len(images), 3, *self.pipeline.output_size),
                                self._tail.device, self._pool)
            label = np.array(labels.as_tensor()).reshape(-1)[:count].astype(np.int64)
            if self._index is not None:
                names = [bytes(np.array(outputs[2][k])).decode("utf-8", "surrogateescape")
                         for k in range(count)]
                indices = np.array([self._index.get(os.path.normpath(p), -1) for p in names],
                                   dtype=np.int64)
            else:
                indices = np.full(count, -1, dtype=np.int64)
            slot = np.arange(done, done + count)
            padded = slot >= self._shard_size  # DALI repeats a sample to even out the shards
            erase = np.zeros((count, 4), np.int32)
            if self.pipeline.erasing is not None:
                e, (h, w) = self.pipeline.erasing, self.pipeline.output_size
                for k, position in enumerate(task.positions.tolist()):
                    erase[k] = erase_box(sample_rng(seed, epoch, position), h, w, e.p, e.scale, e.ratio)
            done += count
            yield HostBatch(out if count == len(out) else out[:count].clone(), label, indices,
                            task.positions, padded, erase, seed, epoch)

    def release(self) -> None:
        """DALI's threads live as long as the loader (``persistent_workers`` has no effect)."""

    def close(self) -> None:
        self._pipe = None
