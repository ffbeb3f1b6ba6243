"""The DALI backend: the pipeline spec lowered to a DALI pipeline fed by fastload's sampler.

fastload decides everything random before DALI runs: a ``fn.external_source`` callback takes the
epoch's batch tasks (from the same sharding as the torch backend), reads each sample's bytes,
plans it from its header with the same draws, and hands DALI the encoded image, the region to
decode, the box to resample and the flip. DALI then decodes only that region (ROI decoding; on
the GPU with ``device="mixed"``), resamples the box to the output size, and flips and normalizes
in ``crop_mirror_normalize`` (the same arithmetic as the tail); erasing runs in the shared
device tail, with the rectangles drawn per sample as on the torch backend. So both backends pick the same samples, crop boxes and
flips for the same seed, and sharding, ``set_epoch`` and resume behave identically.

The graph a DALI user would write (``_graph``)::

    jpegs, anchor, shape, roi_start, roi_end, flip = fn.external_source(feeder, num_outputs=6)
    images = fn.decoders.image_slice(jpegs, anchor, shape, device="mixed")
    images = fn.resize(images, size=(H, W), roi_start=roi_start, roi_end=roi_end)
    #   (a centre crop that can reach outside the resized image instead: resize the whole
    #    image, then fn.slice(..., out_of_bounds_policy="pad"), as torchvision pads after)
    images = <per-sample ops>                       # dali_pixel.py: slots + conditionals
    images = fn.crop_mirror_normalize(images, mirror=flip, mean=..., std=..., output_layout="CHW")
"""

from __future__ import annotations

import collections
import math
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

try:
    from ... import _jpeg
except ImportError:  # pragma: no cover - the C extension is optional
    _jpeg = None

from ...batch import Batch, HostBatch, TaskRun, describe_samples
from ...errors import DecodeError
from ...image_info import open_image, read_header
from ...ops import draws
from ...ops.draws import SampleRngs
from ...ops.geometry import SamplePlan, is_random, plan_sample
from ...ops.spec import Geometry, Pipeline
from ...options import LoaderOptions, OnError
from ...sources.base import Source
from ..buffers import BufferPool
from ..skips import prefetch, read_sample, sample_error
from ..tail import Tail, apply_tail
from ...target_info import split_read
from ..targets import TargetBatch, TargetOptions
from .pixel import encode_steps, pixel_ops, slot_names


def dali_window(plan: SamplePlan, height: int, width: int,
                exact: bool) -> dict[str, list[Any]]:
    """The decode region and the resize ROI of one plan whose box lies inside the image:
    ``anchor`` (x, y) and ``shape`` (w, h) to decode, ``roi_start`` / ``roi_end`` (y, x) of the
    box relative to them. ``exact``: the decoded region is the box plus the resampling filter's
    reach, clipped to the image, so borders resample as a box resize of the whole image does
    (fractional boxes of eval pipelines). Otherwise (integer RandomResizedCrop boxes) the
    region is the box itself."""
    top, left, h, w = plan.box
    reach = math.ceil(max(h / plan.out_size[0], w / plan.out_size[1], 1.0)) + 1 if exact else 0
    x0, y0 = max(0, math.floor(left) - reach), max(0, math.floor(top) - reach)
    x1, y1 = min(width, math.ceil(left + w) + reach), min(height, math.ceil(top + h) + reach)
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    return {"anchor": [x0, y0], "shape": [x1 - x0, y1 - y0],
            "roi_start": [top - y0, left - x0], "roi_end": [top + h - y0, left + w - x0]}


def padded_window(geometry: Geometry, height: int, width: int) -> dict[str, list[Any]]:
    """A centre crop that may reach outside the (resized) image, as torchvision does it: the
    whole image decoded, ``resized`` to (h, w), then the crop at ``pad_anchor`` (x, y; may be
    negative) of ``pad_shape`` (w, h), zeros outside."""
    new_h, new_w = geometry.resized(height, width)
    top, left, _, _ = draws.center_box(new_h, new_w, geometry.output_size)
    out_h, out_w = geometry.output_size
    return {"anchor": [0, 0], "shape": [width, height], "resized": [new_h, new_w],
            "pad_anchor": [int(left), int(top)], "pad_shape": [out_w, out_h]}


def check_encoded(data: bytes, where: str) -> tuple[int, int]:
    """What the feeder can check before DALI decodes (a DALI decode error fails the whole batch
    and its pipeline, so catching a bad sample here is far cheaper than the culprit search
    after one): a readable header, a sane pixel count, a payload that can hold it, libjpeg's own
    parse of the JPEG tables, and an end marker (JPEG's EOI, PNG's IEND) whose absence means a
    truncated file. -> (w, h)."""
    width, height = read_header(data, where)
    if data[:2] == b"\xff\xd8":
        if _jpeg is not None:
            try:
                _jpeg.check_header(data)
            except ValueError as exc:
                raise DecodeError(f"{where}: malformed JPEG header ({exc}); check the file, or "
                                  "replace it") from None
        if b"\xff\xd9" not in data[-64:]:
            raise DecodeError(f"{where}: truncated JPEG (no end-of-image marker); check the "
                              "file, or replace it")
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        raise DecodeError(f"{where}: truncated PNG (no IEND chunk); check the file, or replace it")
    return width, height


FLOATS = ("roi_start", "roi_end", "resized")  # float32 columns (the others: int32)


class Feeder:
    """``fn.external_source`` callback (batch mode): one batch task per call, in order."""

    def __init__(self, source: Source, pipeline: Pipeline, on_error: OnError = OnError(),
                 known_bad: Optional[dict[int, str]] = None,
                 targets: TargetOptions = TargetOptions()) -> None:
        self.source, self.pipeline, self.on_error = source, pipeline, on_error
        self.targets = targets  # masks and boxes: the torch backend's arithmetic, here
        self.random = is_random(pipeline)
        self.pad = pipeline.geometry.may_exceed_image()
        # RandomResizedCrop boxes are whole pixels: decode exactly the box and resize all of it
        # (DALI's resize is faster without a per-sample ROI); other boxes need the ROI.
        self.exact = not pipeline.geometry.random
        resized = ["resized"] if pipeline.geometry.resizes else []  # else unused
        self.outputs = ["jpegs", "anchor", "shape"] \
            + (resized + ["pad_anchor", "pad_shape"] if self.pad else
               ["roi_start", "roi_end"] if self.exact else []) \
            + (["flip"] if pipeline.flip is not None else []) \
            + slot_names(pipeline)
        self.pending = TaskRun()
        # samples DALI failed on (on_error="skip"), kept by the producer across pipelines
        self.known_bad: dict[int, str] = {} if known_bad is None else known_bad
        self.current: Optional[Any] = None  # the task being read (for the timeout's message)
        self.reading = -1  # ...and the sample (-1: none)
        self.meta: collections.deque = collections.deque()
        self.seed = self.epoch = 0

    def start(self, tasks: list[Any], seed: int, epoch: int) -> None:
        self.pending = TaskRun(tasks)
        self.meta.clear()
        self.seed, self.epoch = seed, epoch

    def __call__(self) -> tuple[list[np.ndarray], ...]:
        if not self.pending:
            raise StopIteration
        task = self.current = self.pending.popleft()
        columns: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        collected = TargetBatch(len(task.indices), self.pipeline, self.targets)
        erase = np.zeros((len(task.indices), 4), np.int32)
        indices, skipped = task.indices.copy(), []
        prefetch(self.source, task.indices, self.pending[0].indices if self.pending else None)
        rngs = SampleRngs(self.seed, self.epoch, task.positions) if self.random else None
        for k in range(len(task.positions)):
            def work(index: int) -> tuple[bytes, SamplePlan, tuple]:
                self.reading = index
                if index in self.known_bad:
                    raise DecodeError(self.known_bad[index])
                where = self.source.locate(index)
                data, label, extras = split_read(self.source.read(index), where)
                width, height = check_encoded(data, where)
                rng = rngs.get(k) if rngs is not None else None  # afresh for each try
                plan = plan_sample(self.pipeline, height, width, rng)
                collected.add(k, label, extras, plan, (height, width), where)
                window = padded_window(self.pipeline.geometry, height, width) if self.pad else \
                    dali_window(plan, height, width, self.exact)
                return data, plan, window

            index, (data, plan, window), missed = read_sample(
                self.source, int(task.indices[k]), self.on_error, work)
            skipped.extend(missed)
            indices[k] = index
            erase[k] = plan.erase
            values = {"jpegs": np.frombuffer(data, np.uint8), "flip": int(plan.flip),
                      **{name: np.asarray(v, np.float32 if name in FLOATS else np.int32)
                         for name, v in window.items()},
                      **encode_steps(self.pipeline, plan.steps, plan.flip)}
            for name, column in columns.items():
                value = values[name]
                column.append(np.asarray(value) if isinstance(value, (np.ndarray, np.generic))
                              else np.asarray(value, np.int32))
        self.meta.append(HostBatch(
            None, collected.labels, indices, task.positions, task.padded, erase, self.seed,
            self.epoch, tuple(skipped),
            targets=collected.finish(lambda: describe_samples(self.source, indices))))
        self.current, self.reading = None, -1
        return tuple(columns.values())


def normalize_arguments(pipeline: Pipeline) -> dict[str, Any]:
    """``crop_mirror_normalize`` arguments for the pipeline's Normalize (uint8 out without one)."""
    import nvidia.dali.types as types

    norm = pipeline.normalize
    if norm is None:
        return {"dtype": types.UINT8}
    return {"mean": [m * 255 for m in norm.mean], "std": [s * 255 for s in norm.std],
            "dtype": types.FLOAT16 if norm.dtype == "float16" else types.FLOAT}


def output_dtype(pipeline: Pipeline) -> torch.dtype:
    """What DALI hands over (bfloat16 is made by the tail from float32)."""
    norm = pipeline.normalize
    return torch.uint8 if norm is None else torch.float16 if norm.dtype == "float16" else torch.float32


def _graph(feeder: Feeder, pipeline: Pipeline, gpu: bool) -> Any:
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    inputs = dict(zip(feeder.outputs, fn.external_source(
        source=feeder, num_outputs=len(feeder.outputs), batch=True)))
    images = fn.decoders.image_slice(inputs["jpegs"], inputs["anchor"], inputs["shape"],
                                     device="mixed" if gpu else "cpu", output_type=types.RGB,
                                     normalized_anchor=False, normalized_shape=False,
                                     adjust_orientation=False)  # as PIL: EXIF is not applied
    if feeder.pad:  # resize the whole image, then crop with zeros outside it
        if pipeline.geometry.resizes:
            images = fn.resize(images, size=inputs["resized"], antialias=True,
                               interp_type=types.INTERP_LINEAR)
        images = fn.slice(images, inputs["pad_anchor"], inputs["pad_shape"],
                          normalized_anchor=False, normalized_shape=False,
                          out_of_bounds_policy="pad", fill_values=0)
    else:
        roi = {"roi_start": inputs["roi_start"], "roi_end": inputs["roi_end"]} \
            if feeder.exact else {}
        images = fn.resize(images, size=list(pipeline.output_size), antialias=True,
                           interp_type=types.INTERP_LINEAR, **roi)
    if pipeline.pixel:
        images = pixel_ops(images, inputs, pipeline, gpu)
    return fn.crop_mirror_normalize(images, mirror=inputs.get("flip", 0), output_layout="CHW",
                                    **normalize_arguments(pipeline))


def dali_to_torch(images: Any, shape: tuple[int, ...], device: torch.device,
                  pool: BufferPool) -> torch.Tensor:
    """Copy a DALI batch into a torch tensor: on the GPU on the current stream, on the CPU into
    a recycled buffer of ``pool`` (fresh memory would cost more in page faults)."""
    from nvidia.dali.plugin.pytorch import feed_ndarray

    if device.type == "cpu":
        out = pool.take(shape)
        feed_ndarray(images.as_tensor(), out)
    else:
        out = torch.empty(shape, dtype=pool.dtype, device=device)
        feed_ndarray(images.as_tensor(), out, cuda_stream=torch.cuda.current_stream(out.device))
    return out


class SampleChecker:
    """Decodes one encoded image at a time in a DALI pipeline of its own (rebuilt after a
    failure, which leaves a DALI pipeline unusable): does DALI accept this sample?"""

    def __init__(self, gpu: bool, device: torch.device) -> None:
        self.gpu, self.device, self.pipe, self.data = gpu, device, None, b""

    def _source(self) -> list[np.ndarray]:
        return [np.frombuffer(self.data, np.uint8)]

    def check(self, data: bytes, where: str) -> None:
        from nvidia.dali import fn, pipeline_def

        self.data = data
        if self.pipe is None:
            def graph() -> Any:
                jpegs = fn.external_source(source=self._source, batch=True)
                return fn.decoders.image(jpegs, device="mixed" if self.gpu else "cpu")

            self.pipe = pipeline_def(graph, batch_size=1, num_threads=1, prefetch_queue_depth=1,
                                     device_id=self.device.index if self.gpu else None)()
            self.pipe.build()
        try:
            self.pipe.run()
        except RuntimeError as exc:
            self.pipe = None
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise DecodeError(f"{where}: DALI cannot decode it ({lines[-1] if lines else exc}); "
                              "check the file, or replace it") from None


class DaliProducer:
    """Runs batch tasks through a DALI pipeline, in order, into final Batches.

    One DALI pipeline per output size: a size that follows the epoch (progressive resizing)
    builds the next size's pipeline when its first epoch comes, and keeps the built ones.
    """

    resumable = True

    def __init__(self, source: Source, pipeline: Pipeline, options: LoaderOptions, *,
                 device: torch.device) -> None:
        self.source, self.pipeline, self.options = source, pipeline, options
        self.timeout = options.timeout
        self.gpu = device.type == "cuda"
        self.device = device
        self._tail = Tail(pipeline, device, normalized_input=True)
        self._pool = BufferPool((options.batch_size, 3, *pipeline.largest_output_size()),
                                output_dtype(pipeline), keep=6)  # CPU outputs
        self._pipes: Optional[dict[tuple[int, int], tuple[Any, Feeder]]] = {}
        self._known_bad: dict[int, str] = {}
        self.feeder = self._pipe_for(pipeline.at_epoch(0))[1]

    def _pipe_for(self, pipeline: Pipeline) -> tuple[Any, Feeder]:
        """The built DALI pipeline (and its feeder) of a fixed-size pipeline."""
        from nvidia.dali import pipeline_def

        assert self._pipes is not None
        size = pipeline.output_size
        if size not in self._pipes:
            feeder = Feeder(self.source, pipeline, self.options.errors, self._known_bad,
                            TargetOptions.of(self.source, self.options.ignore_index,
                                             self.options.min_box_size))
            pipe = pipeline_def(
                _graph, batch_size=self.options.batch_size,
                num_threads=max(1, self.options.num_workers),
                device_id=self.device.index if self.gpu else None,
                prefetch_queue_depth=self.options.prefetch_factor,
                enable_conditionals=bool(pipeline.pixel))(feeder, pipeline, self.gpu)
            pipe.build()
            self._pipes[size] = (pipe, feeder)
        return self._pipes[size]

    def batches(self, tasks: list[Any], seed: int, epoch: int,
                following: Optional[Callable[[], list[Any]]] = None) -> Iterator[Batch]:
        """The batches of ``tasks``; ``following`` (the next epoch's tasks) is not used: DALI
        runs one epoch at a time."""
        if self._pipes is None:
            raise RuntimeError("this loader was closed")
        return apply_tail(self._run_tasks(list(tasks), seed, epoch), self._tail, self.timeout,
                          self._describe)

    def _run_tasks(self, tasks: list[Any], seed: int, epoch: int) -> Iterator[HostBatch]:
        """``tasks`` through DALI. With ``on_error="skip"``, a batch DALI cannot decode (its
        pipeline is then dead) is decoded sample by sample on the host to find the culprits,
        which the feeder then skips like any unreadable sample; a new DALI pipeline resumes
        at that batch, with the same draws."""
        pipeline = self.pipeline.at_epoch(epoch)
        while True:
            pipe, self.feeder = self._pipe_for(pipeline)
            self.feeder.start(tasks, seed, epoch)
            done = 0
            try:
                for batch in self._run(pipe):
                    done += 1
                    yield batch
                return
            except DecodeError:
                if self.options.on_error != "skip" or not self._find_culprits():
                    raise
                assert self._pipes is not None
                del self._pipes[pipeline.output_size]  # DALI's pipeline is unusable now
                tasks = tasks[done:]

    def _find_culprits(self) -> bool:
        """Decode every sample of the batches DALI held when it failed, one at a time, with
        PIL and then with DALI's own decoder alone (DALI's JPEG parser is stricter than
        libjpeg); remember the ones that fail as known bad. -> whether any did."""
        found, checker = False, SampleChecker(self.gpu, self.device)
        for meta in list(self.feeder.meta):
            for index in meta.indices.tolist():
                try:
                    where = self.source.locate(index)
                    data = split_read(self.source.read(index), where)[0]
                    open_image(data, where).load()
                    checker.check(data, where)
                except Exception as exc:  # noqa: BLE001 - any failure marks the sample bad
                    self.feeder.known_bad[index] = str(sample_error(exc, self.source, index))
                    found = True
        return found

    def _describe(self) -> str:
        task = self.feeder.current
        if task is None:
            return ""
        reading = self.feeder.reading
        on = f"; it was on sample {reading}: {self.feeder.source.locate(reading)}" \
            if reading >= 0 else ""
        return (f" (DALI's feeder was reading {describe_samples(self.feeder.source, task.indices)}"
                f"{on})")

    def _run(self, pipe: Any) -> Iterator[HostBatch]:
        finished = failed = False
        try:
            while True:
                try:
                    (images,) = pipe.run()
                except StopIteration:
                    finished = True
                    return
                except RuntimeError as exc:
                    failed = True
                    raise self._decode_error(exc) from None
                meta = self.feeder.meta.popleft()
                yield meta._replace(images=self._to_torch(images))
        finally:
            if not finished and not failed:  # abandoned mid-epoch: drop what DALI prefetched
                self.feeder.pending.clear()
                for _ in range(64):  # at most the prefetch depth; a failing batch ends it too
                    try:
                        pipe.run()
                    except Exception:  # StopIteration once drained, or the batch's own error
                        break
            try:
                if not failed:
                    pipe.reset()
            finally:
                if not failed:  # the culprit search reads them
                    self.feeder.meta.clear()

    def _to_torch(self, images: Any) -> torch.Tensor:
        shape = (len(images), 3, *self.feeder.pipeline.output_size)
        return dali_to_torch(images, shape, self.device, self._pool)

    def _decode_error(self, exc: RuntimeError) -> DecodeError:
        meta = self.feeder.meta[0] if self.feeder.meta else None
        where = "unknown samples"
        if meta is not None:
            where = "; ".join(self.feeder.source.locate(int(i)) for i in meta.indices[:8])
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DecodeError(f"DALI could not decode a batch holding: {where}: {first}")

    def release(self) -> None:
        """DALI's threads live as long as the loader (``persistent_workers`` has no effect)."""

    def close(self) -> None:
        self._pipes = None
