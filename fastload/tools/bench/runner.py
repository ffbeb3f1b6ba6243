"""``fastload bench``: run fastload's backends and the baseline on the same data and settings."""

from __future__ import annotations

import itertools
import os
import platform
import subprocess
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

from ...errors import BackendUnavailable, OpNotSupported
from ...ops.spec import Pipeline
from ..progress import Progress
from .stall import RunStats, diagnose, measure, replay

SCHEMA = "fastload.bench/2"


@dataclass
class BenchConfig:
    source: str
    pipeline: Pipeline
    runs: tuple[str, ...] = ("torch", "baseline")
    batch_size: int = 64
    workers: int = 2
    step_ms: float = 0.0
    epochs: int = 1
    steps: Optional[int] = None
    device: Optional[str] = None
    seed: int = 0
    warmup: Optional[int] = None
    replay_batches: int = 8
    on_error: str = "raise"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["pipeline"] = self.pipeline.to_dict()
        out["runs"] = list(self.runs)
        return out


@dataclass
class BenchReport:
    config: BenchConfig
    runs: list[RunStats]
    replay_images_per_s: Optional[float]
    diagnosis: list[str]
    machine: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ratios(self) -> dict[str, float]:
        """Steady-state images/s (after warm-up) of each fastload run over the baseline's, from
        this same invocation."""
        base = next((r for r in self.runs if r.name == "baseline"), None)
        if base is None:
            return {}
        return {f"{r.name}/baseline": r.steady_images_per_s / base.steady_images_per_s
                for r in self.runs if r.name != "baseline"}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "config": self.config.to_dict(), "machine": self.machine,
                "runs": [r.to_dict() for r in self.runs], "ratios": self.ratios,
                "replay_images_per_s": self.replay_images_per_s, "diagnosis": self.diagnosis,
                "skipped": self.skipped}


def machine_info(device: Any = None) -> dict[str, Any]:
    import torch

    from ...backends.torch.imaging import JPEG_DECODER, PIL_FLAVOUR, RESAMPLER
    from PIL import Image

    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "pil": f"{PIL_FLAVOUR} {Image.__version__}", "jpeg": JPEG_DECODER,
            "resample": RESAMPLER, "device": str(device or "cpu"),
            "commit": _commit()}
    if device is not None and getattr(device, "type", "") == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _epochs(loader: Any, epochs: int) -> Iterator[Any]:
    for _ in range(epochs):
        yield from loader


def _to_device(loader: Any, device: Any, epochs: int) -> Iterator[Any]:
    """The baseline loop's own copy: ``images.to(device, non_blocking=True)``."""
    for images, labels in _epochs(loader, epochs):
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def _copies(loader: Any, count: int) -> list[Any]:
    """``count`` batches for the replay ceiling, copied: a kept batch would hold one of the
    loader's recycled buffers for good."""
    from ...batch import Batch

    return [Batch(b.images.clone(), b.labels.clone(), b.indices, b.padded)
            for b in itertools.islice(loader, count)]


def run_bench(config: BenchConfig, progress: Optional[TextIO] = None) -> BenchReport:
    """Measure each requested run in turn (fresh loader each, worker start-up included).

    ``progress``: a stream (the CLI's stderr) for a progress line during each run and a
    one-line result after it; None is silent."""
    import fastload as fl
    from ...device import check_device
    from ...sources import open_source
    from .baseline import baseline_loader

    source = open_source(config.source)
    device = check_device(config.device)
    warmup = config.warmup if config.warmup is not None else 2 * config.workers + 2
    runs, notes, skipped, kept = [], [], {}, []
    for number, name in enumerate(config.runs, 1):
        if name == "baseline":
            loader = baseline_loader(source, config.pipeline, batch_size=config.batch_size,
                                     num_workers=config.workers, pin_memory=device.type == "cuda",
                                     seed=config.seed)
            batches = _to_device(loader, device, config.epochs)
            closer = None
        else:
            try:
                loader = fl.loader(source, config.pipeline, config.batch_size, backend=name,
                                   num_workers=config.workers, device=device, seed=config.seed,
                                   on_error=config.on_error, shuffle=True)
            except (BackendUnavailable, OpNotSupported) as exc:
                skipped[name] = str(exc)
                warnings.warn(f"bench: skipping {name}: {exc}", stacklevel=2)
                continue
            batches = _epochs(loader, config.epochs)
            closer = loader.close
        total = len(loader) * config.epochs
        if config.steps is not None:
            total = min(total, config.steps)
        try:
            with Progress(progress, total, f"batches: {name} ({number}/{len(config.runs)})") as bar:
                stats = measure(batches, step_ms=config.step_ms, max_steps=config.steps,
                                warmup=warmup, name=name, on_step=bar.update)
            stats.extra["skipped"] = getattr(loader, "skipped_count", 0)
            if closer is not None and not kept and config.step_ms > 0:  # after the timed loop
                kept = _copies(loader, config.replay_batches)
        finally:
            if closer is not None:
                closer()
            del loader, batches
        runs.append(stats)
        notes.append(diagnose(stats, config.step_ms, config.workers, len(os.sched_getaffinity(0))))
        if progress is not None:
            progress.write(f"{name}: {stats.steady_images_per_s:.0f} images/s steady, wait p50 "
                           f"{stats.wait_ms['p50']:.1f} ms, p99 {stats.wait_ms['p99']:.1f} ms\n")
            progress.flush()
    ceiling = None  # without a step, replaying cached batches measures nothing
    if kept:
        steps = min(200, max(r.iterations for r in runs))
        ceiling = replay(kept, steps, config.step_ms)
        for r in runs:
            r.replay_images_per_s = ceiling
    return BenchReport(config, runs, ceiling, notes, machine_info(device), skipped)
