"""A conversion's output folder: claimed by one run at a time, temporary names of that run,
and the progress file that lets an interrupted run resume.

- ``claimed(dst)``: an exclusive ``flock`` on ``dst/.fastload-convert.lock`` for the whole
  run, the file naming the process that holds it. A second run into the same folder fails at
  once, naming the first; the lock file is removed when the run ends.
- Temporary names carry the run's token (``.<name>.tmp-<token>``). Under the claim, the
  temporaries of earlier runs (killed ones) are removed first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from ..errors import SourceError
from ..file_lock import locked
from ..formats import tfrecord
from ..formats.manifest import ShardInfo

LOCK = ".fastload-convert.lock"
PROGRESS = ".fastload-convert.json"


@contextmanager
def claimed(dst: Path) -> Iterator[str]:
    """Hold ``dst`` for this run; yields the run's token for its temporary names."""
    path = dst / LOCK
    with locked(path, wait=False, remove=True) as handle:
        if handle is None:
            try:
                holder = path.read_text().strip() or "a process that has just started"
            except OSError:
                holder = "a process that has just ended"
            raise SourceError(f"{dst}: another `fastload convert` is writing here ({holder}); "
                              "wait for it to finish, or convert into another folder")
        run = f"{os.getpid()}"
        handle.truncate(0)
        handle.write(f"pid {run} on {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        handle.flush()
        for stale in dst.glob(".*.tmp*"):  # left by runs that were killed
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        yield run


def temporary(final: Path, run: str) -> Path:
    """The name ``final`` is written under by run ``run`` until it is whole."""
    return final.with_name(f".{final.name}.tmp-{run}")


def remove_temporary(dst: Path, name: str, run: str) -> None:
    """Remove a shard's temporary file or folder (and a TFRecord's index written beside it)."""
    tmp = temporary(dst / name, run)
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)
    for stale in dst.glob(f".{tfrecord.index_path(dst / name).name}.tmp*"):
        stale.unlink(missing_ok=True)


def load_progress(dst: Path, prints: list[str]) -> dict[int, ShardInfo]:
    """Shards a previous, interrupted run finished from the same inputs (and still whole)."""
    try:
        data = json.loads((dst / PROGRESS).read_text())
        entries = {int(k): (v["fingerprint"], ShardInfo(**v["shard"])) for k, v in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    finished = {}
    for k, (fingerprint, shard) in entries.items():
        if k >= len(prints) or fingerprint != prints[k]:
            continue
        path = dst / shard.file
        data_file = path / "data.mdb" if path.is_dir() else path
        if data_file.exists() and data_file.stat().st_size == shard.bytes:
            finished[k] = shard
    return finished


def save_progress(dst: Path, prints: list[str], finished: dict[int, ShardInfo]) -> None:
    tmp = dst / f".{PROGRESS.lstrip('.')}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({str(k): {"fingerprint": prints[k], "shard": asdict(v)}
                               for k, v in finished.items()}))
    os.replace(tmp, dst / PROGRESS)
