"""LMDB environments of Caffe ``Datum`` values as ``fastload convert`` writes them: opened
read-only after checking their size, values checked against the CRC32C stored beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import FormatError
from ..per_process import PerProcess
from . import protowire
from .checksum import crc32c
from .manifest import MANIFEST


def _lmdb() -> Any:
    import lmdb

    return lmdb


def lmdb_error() -> type:
    return _lmdb().Error


def _size(path: str) -> int:
    data = Path(path) / "data.mdb"
    try:
        return data.stat().st_size
    except OSError as exc:
        raise FormatError(f"{data}: cannot read: {exc.strerror or exc}") from None


def check_size(path: str, expected_bytes: int) -> None:
    """``data.mdb`` holds exactly the bytes the manifest lists."""
    size = _size(path)
    if size != expected_bytes:
        raise FormatError(f"{Path(path) / 'data.mdb'}: {size} bytes, but {MANIFEST} lists "
                          f"{expected_bytes}: the file was truncated or replaced; copy it again "
                          "or re-run `fastload convert`")


def open_env(path: str) -> Any:
    """A read-only handle on the environment at ``path``, after checking that ``data.mdb`` holds
    every page the environment's meta page counts: a short file would be mapped and kill the
    process with SIGBUS on first touch. ``lock=False``: no lock file is written beside the data,
    so read-only media work."""
    lmdb = _lmdb()
    size = _size(path)
    try:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True,
                        max_readers=1024, max_dbs=0)
    except lmdb.Error as exc:
        raise FormatError(f"{path}: cannot open as LMDB: {exc}") from None
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if size < needed:
        env.close()
        raise FormatError(f"{Path(path) / 'data.mdb'}: {size} bytes, but its pages need {needed}: "
                          "the file is truncated (an interrupted copy?); copy it again")
    return env


def check_datum(value: bytes, where: str) -> tuple[bytes, int]:
    """An LMDB value -> (encoded image, label), checked: a Datum of an encoded image whose bytes
    match the CRC32C ``fastload convert`` stored with them (values without one, from other
    tools, are not checked)."""
    try:
        data, label, encoded, crc = protowire.decode_datum(value)
    except FormatError as exc:
        raise FormatError(f"{where}: malformed Datum: {exc}") from None
    if not encoded or not data:
        raise FormatError(f"{where}: Datum holds raw pixels, not an encoded image; re-create it "
                          "with encoded=true (e.g. `fastload convert`)")
    if crc is not None and crc32c(data) != crc:
        raise FormatError(f"{where}: the stored image does not match its CRC32C (corrupted on "
                          "disk or in transfer); restore the shard or re-run `fastload convert`")
    return data, label


#: One handle per environment per process (LMDB allows no more), shared by every reader.
_ENVS = PerProcess(open_env, lambda env: env.close())


def shared_env(path: str) -> Any:
    """This process's handle on the environment at ``path`` (opened by ``open_env`` on first
    use; a forked child closes the handles it inherited and opens its own)."""
    return _ENVS.get(path)
