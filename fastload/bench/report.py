"""Bench output: a table for people, JSON for machines, an optional PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from .runner import BenchReport


def table(report: BenchReport) -> str:
    cfg = report.config
    m = report.machine
    lines = [
        f"fastload bench  {cfg.source}",
        f"  pipeline {_pipeline_name(report)}, batch {cfg.batch_size}, {cfg.workers} workers, "
        f"step {cfg.step_ms:g} ms, device {m['device']}, {m['pil']}, torch {m['torch']}, "
        f"{m['cpus']} CPUs, commit {m.get('commit') or '?'}",
        f"  torch backend: JPEG {m.get('jpeg', '?')}; resize {m.get('resample', '?')}",
        "",
        f"  {'run':<12}{'images/s':>10}{'steady':>8}{'1st batch':>11}{'wait p50':>10}{'p90':>8}{'p99':>8}"
        f"{'max':>8}{'stalled':>9}{'warm-up':>9}{'peak RSS':>10}{'peak PSS':>10}",
    ]
    for r in report.runs:
        w = r.wait_ms
        lines.append(
            f"  {r.name:<12}{r.images_per_s:>10.0f}{r.steady_images_per_s:>8.0f}"
            f"{r.time_to_first_batch_s:>10.2f}s"
            f"{w['p50']:>8.1f}ms{w['p90']:>6.1f}ms{w['p99']:>6.1f}ms{w['max']:>6.1f}ms"
            f"{r.stalled_fraction:>9.0%}{r.warmup_mean_wait_ms:>7.1f}ms"
            f"{_mib(r.peak_rss_bytes):>10}{_mib(r.peak_pss_bytes):>10}")
    for r in report.runs:
        if r.extra.get("skipped"):
            lines.append(f"  {r.name}: {r.extra['skipped']} bad samples skipped (on_error='skip')")
    lines.append("")
    for key, value in report.ratios.items():
        lines.append(f"  ratio {key}: {value:.2f}x (steady images/s; same data, settings and "
                     "invocation)")
    if report.replay_images_per_s is not None:
        lines.append(f"  replay ceiling (same loop over cached batches): "
                     f"{report.replay_images_per_s:.0f} images/s")
    for name, why in report.skipped.items():
        lines.append(f"  skipped {name}: {why}")
    lines.append("")
    lines += [f"  {d}" for d in report.diagnosis]
    lines.append("  (wait = time blocked taking the next batch until it is usable on the device; "
                 "steady and percentiles: after the warm-up iterations)")
    return "\n".join(lines)


def _pipeline_name(report: BenchReport) -> str:
    return " > ".join(type(op).__name__ for op in report.config.pipeline.ops) + \
        f" -> {report.config.pipeline.output_size}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n else "-"


def write_json(report: BenchReport, path: Union[str, Path]) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=1) + "\n")


def plot(report: BenchReport, path: Union[str, Path]) -> None:
    """Wait per iteration and its histogram, one colour per run (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import BackendUnavailable

        raise BackendUnavailable("--plot needs matplotlib: pip install 'fastload[plot]'") from None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    for r in report.runs:
        left.plot(range(len(r.waits_ms)), r.waits_ms, label=f"{r.name} ({r.images_per_s:.0f} img/s)",
                  linewidth=1)
        right.hist(r.waits_ms[r.warmup_iterations:], bins=40, alpha=0.5, label=r.name)
    left.set_xlabel("iteration")
    left.set_ylabel("wait (ms)")
    left.set_yscale("symlog", linthresh=1.0)
    left.set_title(f"wait per iteration (step {report.config.step_ms:g} ms)")
    left.legend()
    right.set_xlabel("wait after warm-up (ms)")
    right.set_ylabel("iterations")
    right.set_title("histogram")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
