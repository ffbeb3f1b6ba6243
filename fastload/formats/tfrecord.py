"""TFRecord framing and DALI / `tfrecord`-package index files.

A record: uint64 length (little-endian), uint32 masked CRC32C of those 8 bytes, the data,
uint32 masked CRC32C of the data. An index file has one ``"offset length"`` line per record,
``length`` counting the 16 framing bytes too (what DALI's and the tfrecord package's
``tfrecord2idx`` write).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from ..errors import FormatError

from .checksum import crc32c

HEADER = 12  # length + its CRC
FOOTER = 4   # data CRC
_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One framed record."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def unframe(buf: bytes, where: str, verify: bool = True) -> bytes:
    """The data of one whole framed record ``buf``; FormatError naming ``where`` on any fault."""
    if len(buf) < HEADER + FOOTER:
        raise FormatError(f"{where}: record of {len(buf)} bytes is shorter than its framing; "
                          "the file is truncated or the index is stale")
    (length,) = struct.unpack_from("<Q", buf, 0)
    if length != len(buf) - HEADER - FOOTER:
        if struct.unpack_from("<I", buf, 8)[0] != masked_crc(buf[:8]):
            raise FormatError(f"{where}: the record's length field is damaged (its CRC does not "
                              "match); the file is corrupted: restore or re-convert the shard")
        raise FormatError(f"{where}: record says {length} data bytes but the index gives "
                          f"{len(buf) - HEADER - FOOTER}; the index is stale: rebuild it with "
                          "`fastload index`")
    if verify:
        (crc,) = struct.unpack_from("<I", buf, 8)
        if crc != masked_crc(buf[:8]):
            raise FormatError(f"{where}: length CRC mismatch; the file is corrupted")
        (crc,) = struct.unpack_from("<I", buf, len(buf) - FOOTER)
        if crc != masked_crc(buf[HEADER:len(buf) - FOOTER]):
            raise FormatError(f"{where}: data CRC mismatch; the file is corrupted")
    return buf[HEADER:len(buf) - FOOTER]


def scan(path: Union[str, Path]) -> np.ndarray:
    """Build an index by walking the framing: an (n, 2) int64 array of (offset, length).

    Only the 12-byte headers are read (length CRCs checked); a record running past the end of
    the file is a FormatError naming its offset.
    """
    size = os.path.getsize(path)
    rows = []
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            head = f.read(HEADER)
            if len(head) < HEADER:
                raise FormatError(f"{path}: truncated record header at offset {offset}")
            (length,) = struct.unpack_from("<Q", head, 0)
            if struct.unpack_from("<I", head, 8)[0] != masked_crc(head[:8]):
                raise FormatError(f"{path}: length CRC mismatch at offset {offset}; not a TFRecord "
                                  "file, or corrupted")
            total = HEADER + length + FOOTER
            if offset + total > size:
                raise FormatError(f"{path}: record at offset {offset} needs {total} bytes but the "
                                  f"file ends after {size - offset}; the file is truncated")
            rows.append((offset, total))
            offset += total
            f.seek(offset)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def index_path(path: Union[str, Path]) -> Path:
    """``<shard>.idx``, beside the shard (DALI's convention)."""
    return Path(f"{path}.idx")


def write_index(rows: np.ndarray, path: Union[str, Path]) -> None:
    """Write an index atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text("".join(f"{o} {n}\n" for o, n in rows.tolist()))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_index(path: Union[str, Path], data_path: Union[str, Path]) -> np.ndarray:
    """Parse an index file and check it against its shard: contiguous records that end exactly
    at the end of the file, or a FormatError that says the index is stale."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read index: {exc.strerror or exc}") from None
    return parse_index(text, str(path), str(data_path), os.path.getsize(data_path))


def parse_index(text: str, path: str, data_path: str, size: int) -> np.ndarray:
    """An index's text -> (offset, length) rows, checked against its shard of ``size`` bytes."""
    try:
        rows = np.asarray([line.split() for line in text.splitlines() if line.strip()],
                          dtype=np.int64).reshape(-1, 2)
    except ValueError:
        raise FormatError(f"{path}: not an index file (expected 'offset length' lines)") from None
    ends = rows[:, 0] + rows[:, 1]
    contiguous = len(rows) and rows[0, 0] == 0 and not np.any(rows[1:, 0] != ends[:-1]) \
        and not np.any(rows[:, 1] < HEADER + FOOTER)
    if contiguous and ends[-1] > size:
        raise FormatError(f"{data_path}: holds {size} bytes but its index {path} covers "
                          f"{ends[-1]}: the shard is truncated (or was replaced); restore it or "
                          "re-convert (rebuilding the index would drop the records it lost)")
    if len(rows) and (not contiguous or ends[-1] != size):
        raise FormatError(f"{path}: index does not match {data_path} ({size} bytes); it is "
                          f"stale: rebuild it with `fastload index {data_path}`")
    if not len(rows) and size:
        raise FormatError(f"{path}: empty index for a non-empty {data_path}; rebuild it with "
                          f"`fastload index {data_path}`")
    return rows


def write_records(f: BinaryIO, payloads: list[bytes]) -> np.ndarray:
    """Frame and write records; returns their (offset, length) rows relative to ``f``'s start."""
    rows = []
    offset = f.tell()
    for data in payloads:
        framed = frame(data)
        f.write(framed)
        rows.append((offset, len(framed)))
        offset += len(framed)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)
