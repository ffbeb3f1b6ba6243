"""Tar members by their headers alone: names, data offsets and sizes, for random access.

Reads the 512-byte headers of a tar (POSIX ustar, GNU long names, pax extended headers) and
skips over the data, so indexing a shard reads a few hundred bytes per member. What a member
holds is then one ``pread`` of (offset, size).
"""

from __future__ import annotations

import os
from typing import BinaryIO, Iterator, NamedTuple

from ..errors import FormatError

BLOCK = 512


class Member(NamedTuple):
    name: str
    offset: int  # of the first data byte, in the tar file
    size: int


def members(f: BinaryIO, where: str) -> Iterator[Member]:
    """The regular files of the tar open as ``f``, in order; FormatError naming ``where`` and
    the offset for a damaged header or a member that runs past the end of the file."""
    total = os.fstat(f.fileno()).st_size
    offset, long_name, pax_name, pax_size = 0, None, None, None
    while offset + BLOCK <= total:
        f.seek(offset)
        header = f.read(BLOCK)
        if header == b"\0" * BLOCK:
            return  # the end-of-archive blocks
        if not _checksum_ok(header):
            raise FormatError(f"{where}: the tar header at offset {offset} is damaged (its "
                              "checksum does not match): the shard is corrupted or not a tar")
        kind = header[156:157]
        size = pax_size if pax_size is not None else _octal(header[124:136], where, offset)
        data = offset + BLOCK
        if data + size > total:
            raise FormatError(f"{where}: the member at offset {offset} needs {size} bytes but the "
                              f"file ends after {total - data}: the shard is truncated")
        if kind in (b"L", b"x", b"g"):
            f.seek(data)
            payload = f.read(size)
            if kind == b"L":
                long_name = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif kind == b"x":
                pax_name, pax_size = _pax(payload, where, offset)
        else:
            if kind in (b"0", b"\0", b"7"):
                name = long_name or pax_name or _ustar_name(header)
                yield Member(name, data, size)
            long_name = pax_name = pax_size = None
        offset = data + (size + BLOCK - 1) // BLOCK * BLOCK
    f.seek(offset)
    if any(f.read(BLOCK)):
        raise FormatError(f"{where}: {total - offset} stray bytes at offset {offset}: the shard "
                          "is truncated")


def _checksum_ok(header: bytes) -> bool:
    stored = header[148:156].replace(b"\0", b" ").strip()
    try:
        want = int(stored, 8)
    except ValueError:
        return False
    plain = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return want == plain


def _octal(field: bytes, where: str, offset: int) -> int:
    if field[0] & 0x80:  # GNU base-256 for large sizes
        return int.from_bytes(field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise FormatError(f"{where}: the tar header at offset {offset} has size field "
                          f"{field!r}") from None


def _ustar_name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax(payload: bytes, where: str, offset: int) -> tuple[str | None, int | None]:
    """``path`` and ``size`` of a pax extended header (records ``"<len> key=value\\n"``)."""
    name, size, at = None, None, 0
    while at < len(payload) and payload[at:at + 1] != b"\0":
        space = payload.find(b" ", at)
        try:
            length = int(payload[at:space])
        except ValueError:
            raise FormatError(f"{where}: the pax header at offset {offset} is damaged") from None
        key, _, value = payload[space + 1:at + length - 1].partition(b"=")
        if key == b"path":
            name = value.decode("utf-8", "surrogateescape")
        elif key == b"size":
            size = int(value)
        at += length
    return name, size
