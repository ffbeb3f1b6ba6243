"""Bench output: a table for people, JSON for machines, an optional PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from .runner import BenchReport
from .stall import STALL_MS


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
    ]
    lines += _columns(
        ["run", "images/s", "steady", "1st batch", "wait p50", "p90", "p99", "max", "stalled",
         "warm-up", "peak RSS", "peak PSS"],
        [[r.name, f"{r.images_per_s:.0f}", f"{r.steady_images_per_s:.0f}",
          f"{r.time_to_first_batch_s:.2f}s", *(_ms(r.wait_ms[k]) for k in ("p50", "p90", "p99", "max")),
          f"{r.stalled_fraction:.0%}", _ms(r.warmup_mean_wait_ms), _mib(r.peak_rss_bytes),
          _mib(r.peak_pss_bytes)] for r in report.runs])
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
    lines.append("  columns: images/s over the whole run; steady = images/s after warm-up; 1st "
                 "batch = time to the first batch; wait p50..max = the loop's wait per step; "
                 f"stalled = share of steps that waited > {STALL_MS:g} ms; warm-up = mean wait "
                 "of the warm-up steps; peak RSS = the most memory the process and its workers "
                 "held at once; peak PSS = the same with shared pages split among the "
                 "processes sharing them (what the machine really spends)")
    return "\n".join(lines)


def _columns(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, the rest right-aligned, two spaces between columns whatever
    the widths of the numbers."""
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        out.append("  " + "  ".join(cells))
    return out


def _ms(value: float) -> str:
    return f"{value:.1f}ms"


def _pipeline_name(report: BenchReport) -> str:
    return " > ".join(type(op).__name__ for op in report.config.pipeline.ops) + \
        f" -> {report.config.pipeline.at_epoch(0).output_size}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n else "-"


def write_json(report: BenchReport, path: Union[str, Path]) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=1) + "\n")


def check_plotting() -> None:
    """BackendUnavailable now (before a long run) when matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        from ...errors import BackendUnavailable

        raise BackendUnavailable("--plot needs matplotlib: pip install 'fastload-images[plot]'")


def plot(report: BenchReport, path: Union[str, Path]) -> None:
    """Wait per iteration and its histogram, one colour per run (needs matplotlib)."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    steady = [r.waits_ms[r.warmup_iterations:] for r in report.runs]
    top = max((max(w) for w in steady if w), default=1.0)
    bins = [top * k / 40 for k in range(41)]  # the same bins for every run
    for r, waits in zip(report.runs, steady):
        left.plot(range(len(r.waits_ms)), r.waits_ms, label=f"{r.name} ({r.images_per_s:.0f} img/s)",
                  linewidth=1)
        # outlines, not filled bars: a fast run's narrow peak stays visible in front of the rest
        right.hist(waits, bins=bins, histtype="step", linewidth=1.5, label=r.name)
    left.set_xlabel("iteration")
    left.set_ylabel("wait (ms)")
    left.set_yscale("symlog", linthresh=1.0)
    left.set_title(f"wait per iteration (step {report.config.step_ms:g} ms)")
    left.legend()
    right.set_xlabel("wait after warm-up (ms)")
    right.set_ylabel("iterations")
    right.set_title("histogram")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
