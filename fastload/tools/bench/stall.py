"""Stall: how long a training loop waits on its data, iteration by iteration.

``measure`` drives any iterable of batches (a fastload loader, a DataLoader, a generator) the
way a training loop does: take a batch (the *wait*, until it is usable on its device), then
spend ``step_ms`` on a simulated step. Percentiles are taken after the warm-up iterations.
"""

from __future__ import annotations

import gc
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Optional

import numpy as np

from .memory import TreeMemory

STALL_MS = 1.0  # a step "stalled" when its wait exceeds this


@dataclass
class Spikes:
    count: int = 0
    period: Optional[int] = None   # steps between spikes, when they recur regularly
    mean_ms: float = 0.0
    threshold_ms: float = 0.0
    in_gc: int = 0                 # spikes during which the training process collected garbage
    gc_ms: float = 0.0             # the time those collections took


class GcClock:
    """The training process's garbage collections (``gc.callbacks``) as (start, end) times of
    ``clock``, while active."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock, self.spans, self._start = clock, [], 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = self.clock()
        else:
            self.spans.append((self._start, self.clock()))

    def __enter__(self) -> "GcClock":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self)

    def within(self, t0: float, t1: float) -> float:
        """Seconds of collection inside [t0, t1]; windows come in time order, so collections
        over by ``t1`` are dropped (the list stays short however long the run)."""
        total = sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in self.spans)
        self.spans = [(a, b) for a, b in self.spans if b > t1]
        return total


@dataclass
class RunStats:
    name: str
    iterations: int
    images: int
    seconds: float
    images_per_s: float                    # the whole run, start-up and warm-up included
    steady_images_per_s: float             # after the warm-up iterations (what a long run gets)
    time_to_first_batch_s: float
    wait_ms: dict[str, float]              # p50, p90, p99, max, mean (steady state)
    stalled_fraction: float                # steady-state steps whose wait > 1 ms
    warmup_iterations: int
    warmup_mean_wait_ms: float
    steady_mean_wait_ms: float
    spikes: Spikes
    peak_rss_bytes: int = 0
    peak_pss_bytes: int = 0
    replay_images_per_s: Optional[float] = None
    waits_ms: list[float] = field(default_factory=list, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, with_waits: bool = True) -> dict[str, Any]:
        out = asdict(self)
        if not with_waits:
            out.pop("waits_ms")
        return out


def _count(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(first.shape[0]) if hasattr(first, "shape") else len(first)


def _ready(batch: Any) -> None:
    """Block until the batch's tensors are usable on their device (CUDA copies included)."""
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    if getattr(getattr(first, "device", None), "type", None) == "cuda":
        import torch

        torch.cuda.current_stream(first.device).synchronize()


def measure(batches: Iterable[Any], *, step_ms: float = 0.0, max_steps: Optional[int] = None,
            warmup: int = 5, name: str = "loader", memory: bool = True,
            on_step: Optional[Callable[[int], Any]] = None,
            clock: Callable[[], float] = time.perf_counter,
            sleep: Callable[[float], Any] = time.sleep) -> RunStats:
    """Run a training-like loop over ``batches`` and return its stall statistics.

    ``step_ms`` simulates the work of one step (the loop sleeps, like a process waiting on its
    GPU). ``max_steps`` stops early. The first ``warmup`` iterations count for time-to-first-
    batch and the warm-up figures but not for the steady-state percentiles. ``on_step(k)`` is
    called after step ``k`` (a progress display), outside the timed wait. ``clock`` (seconds)
    and ``sleep`` are the real ones unless a test gives a fake pair.
    """
    waits: list[float] = []
    collected: list[float] = []  # ms of garbage collection in the training process, per wait
    taken: list[tuple[float, int]] = []  # (time, images so far) after each batch
    images = 0
    with TreeMemory(enabled=memory) as mem, GcClock(clock) as gcs:
        start = clock()
        iterator = iter(batches)
        while max_steps is None or len(waits) < max_steps:
            t0 = clock()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            _ready(batch)
            now = clock()
            waits.append((now - t0) * 1000.0)
            collected.append(gcs.within(t0, now) * 1000.0)
            images += _count(batch)
            taken.append((now - start, images))
            if step_ms > 0:
                sleep(step_ms / 1000.0)
            if on_step is not None:
                on_step(len(waits))
        seconds = clock() - start
    if not waits:
        raise ValueError(f"{name}: the iterable yielded no batches")
    return summarize(name, waits, images, seconds, warmup, mem.peak_rss, mem.peak_pss, taken,
                     collected)


def summarize(name: str, waits: list[float], images: int, seconds: float, warmup: int,
              peak_rss: int = 0, peak_pss: int = 0,
              taken: Optional[list[tuple[float, int]]] = None,
              collected: Optional[list[float]] = None) -> RunStats:
    """Statistics of a wait series (ms per iteration); ``taken``: (seconds since the start,
    images so far) after each batch, for the steady-state throughput."""
    warm = min(warmup, max(0, len(waits) - 1))
    steady_ips = images / seconds if seconds > 0 else math.inf
    # a rate from a batch or two after the warm-up is noise: the whole run's rate then
    if taken and warm and len(waits) - warm >= warmup:
        since, before = taken[warm - 1]
        if seconds > since:
            steady_ips = (images - before) / (seconds - since)
    steady = np.asarray(waits[warm:], dtype=np.float64)
    pct = {f"p{q}": float(np.percentile(steady, q)) for q in (50, 90, 99)}
    wait_ms = {**pct, "max": float(steady.max()), "mean": float(steady.mean())}
    return RunStats(
        name=name, iterations=len(waits), images=images, seconds=seconds,
        images_per_s=images / seconds if seconds > 0 else math.inf,
        steady_images_per_s=steady_ips,
        time_to_first_batch_s=waits[0] / 1000.0, wait_ms=wait_ms,
        stalled_fraction=float((steady > STALL_MS).mean()), warmup_iterations=warm,
        warmup_mean_wait_ms=float(np.mean(waits[:warm])) if warm else 0.0,
        steady_mean_wait_ms=float(steady.mean()),
        spikes=find_spikes(steady, np.asarray(collected[warm:]) if collected else None),
        peak_rss_bytes=peak_rss, peak_pss_bytes=peak_pss, waits_ms=list(waits))


def find_spikes(waits: np.ndarray, collected: Optional[np.ndarray] = None) -> Spikes:
    """Waits well above the typical one, their period when they recur regularly, and how many
    of them the training process spent partly collecting garbage (``collected``: ms a wait)."""
    if len(waits) < 4:
        return Spikes()
    threshold = max(2.0, 4.0 * float(np.median(waits)))
    where = np.flatnonzero(waits > threshold)
    spikes = Spikes(count=len(where), threshold_ms=threshold,
                    mean_ms=float(waits[where].mean()) if len(where) else 0.0)
    if collected is not None and len(where):
        spikes.in_gc = int((collected[where] > 0.1 * waits[where]).sum())
        spikes.gc_ms = float(collected[where].sum())
    if len(where) >= 3:
        gaps = Counter(np.diff(where).tolist())
        gap, hits = gaps.most_common(1)[0]
        if gap > 1 and hits >= 0.6 * (len(where) - 1):
            spikes.period = int(gap)
    return spikes


def diagnose(stats: RunStats, step_ms: float, workers: Optional[int],
             cpus: Optional[int] = None) -> str:
    """One plain-language paragraph on what the numbers mean; advice on the worker count
    never goes past ``cpus`` (more workers than CPUs only share the same cores)."""
    if stats.stalled_fraction == 0 and stats.wait_ms["p99"] <= STALL_MS:
        return (f"{stats.name}: no stalls: the loop never waited more than "
                f"{stats.wait_ms['max']:.1f} ms after warm-up; data loading keeps up.")
    parts = []
    sp = stats.spikes
    if sp.period:
        parts.append(f"a {sp.mean_ms:.0f} ms wait every {_nth(sp.period)} step")
        if workers and sp.period == workers:
            cycle = stats.seconds * 1000.0 / max(1, stats.iterations)
            need = math.ceil(workers * cycle / step_ms) if step_ms > 0 else None
            advice = ""
            if need and need > workers:
                advice = f"; about {need} workers would"
                if cpus and need > cpus:
                    more = (f"up to {cpus} workers (one per CPU) would help some, but "
                            if workers < cpus else "more workers will not help: ")
                    advice = (f"; {more}keeping up needs about {need} workers' worth of CPU "
                              f"and this machine has {cpus} CPUs (a lighter pipeline, a longer "
                              "step or more CPUs would)")
            parts.append(f"{workers} workers cannot keep up with a {step_ms:g} ms step{advice}")
    if sp.in_gc:
        parts.append(f"{sp.in_gc} of the {sp.count} waits over {sp.threshold_ms:.1f} ms came with "
                     f"garbage collection in the training process ({sp.gc_ms:.1f} ms in all): "
                     "gc.freeze() after building the model and loader, or fewer live Python "
                     "objects, shortens them")
    elif sp.count and not sp.period:
        parts.append(f"{sp.count} single waits of ~{sp.mean_ms:.0f} ms, none during garbage "
                     "collection here: a worker's batch finished late (the machine's other "
                     "load, or a worker sharing its core), not a loader that cannot keep up")
    if stats.stalled_fraction > 0:
        parts.append(f"{stats.stalled_fraction:.0%} of steps waited more than {STALL_MS:g} ms "
                     f"(mean wait {stats.steady_mean_wait_ms:.1f} ms)")
    if step_ms <= 0:
        parts.append("no step time was given (--step-ms 0), so the loop only takes batches and "
                     "any loader waits: these figures are the loader's top speed. For a verdict "
                     "on your training, time one step of your model and re-run with --step-ms "
                     "<that time in ms>")
    elif stats.steady_mean_wait_ms > 0.5 * step_ms and not sp.period:
        parts.append("the loader is slower than the step: the loop is data-bound")
    return f"{stats.name}: " + "; ".join(parts) + "."


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def replay(batches: list[Any], steps: int, step_ms: float) -> float:
    """The replay ceiling: images/s of the same loop over batches already in memory."""
    if not batches:
        return math.inf
    images = 0
    start = time.perf_counter()
    for k in range(steps):
        batch = batches[k % len(batches)]
        _ready(batch)
        images += _count(batch)
        if step_ms > 0:
            time.sleep(step_ms / 1000.0)
    return images / (time.perf_counter() - start)
