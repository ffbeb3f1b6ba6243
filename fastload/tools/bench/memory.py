"""Peak memory of this process and all its descendants (DataLoader workers included).

A background thread samples the RSS sum from /proc every ``interval`` seconds (cheap) and the PSS
sum (shared pages counted once, from smaps_rollup: ~10 ms a process, so only every
``pss_every`` samples and at the end), keeping the largest of each. Linux only; elsewhere the
figures stay 0.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return out


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def tree_memory(pid: int, pss: bool = True) -> tuple[int, int]:
    """(sum of RSS, sum of PSS or 0) in bytes over ``pid`` and its descendants, now."""
    pids = descendants(pid)
    return sum(_rss(p) for p in pids), sum(_pss(p) for p in pids) if pss else 0


class TreeMemory:
    """Context manager that records the peak (RSS, PSS) of this process tree while active."""

    def __init__(self, enabled: bool = True, interval: float = 0.25, pss_every: int = 12) -> None:
        self.enabled = enabled and Path("/proc/self/statm").exists()
        self.interval, self.pss_every = interval, pss_every
        self.peak_rss = self.peak_pss = 0
        self._samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fastload-memory")

    def sample(self, pss: bool = True) -> None:
        rss, pss = tree_memory(os.getpid(), pss)
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def _run(self) -> None:
        if hasattr(os, "sched_setscheduler"):  # waking to sample must not preempt the loop
            try:
                os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # this thread
            except OSError:
                pass
        while not self._stop.wait(self.interval):
            self._samples += 1
            self.sample(pss=self._samples % self.pss_every == 0)

    def __enter__(self) -> "TreeMemory":
        if self.enabled:
            self.sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self.sample()
