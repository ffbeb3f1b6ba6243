"""Advisory file locks (``flock``) between the processes of a node, and their owners' liveness.

A lock file may be removed by its holder (``remove=True``): whoever then acquires the old
file sees that the path no longer leads to it and locks the new one, so removing a lock file
never lets two processes in at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Optional, Union


@contextmanager
def locked(path: Union[str, Path], *, wait: bool = True,
           remove: bool = False) -> Iterator[Optional[IO[bytes]]]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block; yields
    the open lock file, or None when ``wait`` is False and another process holds it.
    ``remove``: unlink the lock file before releasing it (nothing is left behind)."""
    while True:
        handle = open(path, "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            yield None
            return
        try:
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                break  # the path still leads to the file locked
        except FileNotFoundError:
            pass  # its holder removed it meanwhile: lock the new one
        handle.close()
    try:
        yield handle
    finally:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        handle.close()  # releases the lock


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this node (a pid written by a process of the node)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True

