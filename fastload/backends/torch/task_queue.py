"""The torch backend's side of the DataLoader: the task queue it samples from, the deadline
on each batch, and the scheduling policy of the DataLoader's helper threads."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Iterator, Optional, Sequence

from ...batch import BatchTask, TaskRun
from ..buffers import BufferPool
from ..torch_internals import helper_threads, is_timeout


class TaskQueue:
    """The DataLoader's batch_sampler and the producer's record of what it owes: every task
    queued and not yet delivered, of which the first ``dispatched`` were handed to the
    DataLoader (one ``[task]`` at a time).

    Tasks may be added while the DataLoader runs (the next epoch's, so the workers never idle
    at an epoch boundary); once every queued task was handed out, that iteration is over and
    ``extend`` says so (returns False). With a buffer pool, each task gets a slot that no batch
    in flight uses and that the caller no longer holds (else no slot: the worker writes into a
    fresh buffer). With ``lookahead`` (the number of workers, for a source that fetches over
    a network) each task also carries the indices of the task ``lookahead`` places after it,
    the one the DataLoader's round-robin will hand to the same worker next (``BatchTask.ahead``).
    """

    def __init__(self, pool: Optional[BufferPool] = None, lookahead: int = 0) -> None:
        self._lookahead = lookahead
        self.pending = TaskRun()  # queued, not yet delivered (read it; change it through here)
        self._dispatched = 0
        self._lock = threading.Lock()
        self._finished = False
        self._pool = pool
        self._in_flight: set[int] = set()

    def reset(self, *tasks: Sequence[BatchTask]) -> None:
        """A new iteration (the DataLoader has drained the old one: nothing is in flight)."""
        with self._lock:
            self.pending, self._dispatched, self._finished = TaskRun(*tasks), 0, False
            self._in_flight.clear()

    def drop(self) -> None:
        """Owe nothing: the stream was dropped (hand out no more of its tasks either)."""
        with self._lock:
            self.pending, self._dispatched, self._finished = TaskRun(), 0, True

    def delivered(self) -> None:
        """The first pending task's batch reached the caller."""
        with self._lock:
            self.pending.popleft()
            self._dispatched -= 1

    def arrived(self, slot: int) -> None:
        """The batch written into ``slot`` reached the main process."""
        with self._lock:
            self._in_flight.discard(slot)

    def extend(self, tasks: Sequence[BatchTask]) -> bool:
        with self._lock:
            if self._finished:
                return False
            self.pending.extend(tasks)
            return True

    def __iter__(self) -> Iterator[list[BatchTask]]:
        while True:
            with self._lock:
                if self._dispatched >= len(self.pending):
                    self._finished = True
                    return
                task = self.pending[self._dispatched]
                self._dispatched += 1
                slot = self._pool.free_slot(self._in_flight) if self._pool is not None else -1
                if slot >= 0:
                    self._in_flight.add(slot)
                    task = task._replace(slot=slot)
                later = self._dispatched - 1 + self._lookahead
                if self._lookahead and later < len(self.pending):
                    task = task._replace(ahead=self.pending[later].indices)
            yield [task]

    def __len__(self) -> int:
        return len(self.pending) - self._dispatched


def no_wakeup_preemption(iterator: Any) -> None:
    """SCHED_BATCH for the DataLoader's helper threads in this process (the index queues'
    feeder threads, the pin-memory thread): same CPU share, but waking one no longer preempts
    the training loop's thread (otherwise a woken feeder takes the loop's CPU, and a decode
    worker it wakes may hold it a whole slice; the effect on waits is in benchmarks/README.md).
    Linux only; a kernel that refuses leaves the threads as they are."""
    if not hasattr(os, "sched_setscheduler"):
        return
    for thread in helper_threads(iterator):
        native_id = getattr(thread, "native_id", None)
        if native_id is not None and thread.is_alive():
            try:
                os.sched_setscheduler(native_id, os.SCHED_BATCH, os.sched_param(0))
            except OSError:
                pass


WORKER_SLICE_NS = 500_000  # 0.5 ms: p99 wait at 70% load 3.2 -> 0.9 ms (benchmarks/README.md)
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}  # the syscall's number


def short_time_slice(nanoseconds: int = WORKER_SLICE_NS) -> bool:
    """Ask the kernel for a short time slice for this thread (EEVDF's per-task slice, Linux
    6.12+; same policy and nice value, so the same CPU share): a decode worker that holds a core
    then gives it up to the training loop's woken thread after at most ``nanoseconds`` instead
    of a whole default slice (~3 ms), which was most of the loop's waits over 2 ms when the
    workers keep every core busy. True when the kernel took it; anything else (another OS or
    architecture, an older kernel) leaves the thread as it was."""
    import ctypes
    import platform
    import struct

    number = _SCHED_SETATTR.get(platform.machine())
    if number is None or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        # struct sched_attr (SCHED_ATTR_SIZE_VER0): size, policy SCHED_OTHER, flags, nice,
        # priority, runtime (the requested slice), deadline, period
        attr = ctypes.create_string_buffer(struct.pack("IIQiIQQQ", 48, 0, 0, nice, 0,
                                                       nanoseconds, 0, 0), 48)
        return libc.syscall(number, 0, attr, 0) == 0
    except (OSError, AttributeError):
        return False


LIVENESS_POLL_S = 5.0  # torch's MP_STATUS_CHECK_INTERVAL: how often a dead worker is noticed


class Deadline:
    """A DataLoader iterator whose ``next()`` retries the DataLoader's short timeouts (each one
    a liveness check of the workers) until ``timeout`` seconds have passed in all."""

    def __init__(self, iterator: Any, timeout: float) -> None:
        self.iterator, self.timeout = iterator, timeout

    def __iter__(self) -> "Deadline":
        return self

    def __next__(self) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return next(self.iterator)
            except RuntimeError as exc:
                if not is_timeout(exc) or time.monotonic() >= deadline:
                    raise


# A worker's finished batch leaves through multiprocessing.Queue's feeder thread, which needs
# the GIL; while the worker's main thread runs Python, CPython hands the GIL over only after its
# switch interval (5 ms by default). Waits of 4-5 ms at 70% load came from that: on a photo set
# never tuned on, 0.5 ms took the runs with p99 < 2 ms from 33 of 40 to 30 of 30
# (benchmarks/README.md, "Waits at 70% of capacity"). The worker is fastload's process; the
# training process's interval is left alone.
WORKER_SWITCH_S = 0.0005


class WorkerInit:
    """DataLoader ``worker_init_fn``: a short time slice for the worker (``short_time_slice``)
    and a short GIL switch interval (``WORKER_SWITCH_S``),
    and the worker exits when the training process does, however it was started (a forked
    worker's parent is the training process, but a fork server's workers are its children, and
    they outlived a SIGKILLed training process by minutes). A daemon thread waits on a pidfd of
    the training process (a poll of its pid every second where pidfds are missing), then ends
    the worker at once."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __call__(self, worker_id: int) -> None:
        short_time_slice()
        sys.setswitchinterval(WORKER_SWITCH_S)
        threading.Thread(target=self._watch, name="fastload-parent-watch", daemon=True).start()

    def _watch(self) -> None:
        import select

        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has exited
        else:
            while True:
                time.sleep(1.0)
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    continue
        os._exit(1)
