"""Parquet data pages by their headers: one value of a binary column read by random access.

pyarrow reads the footer (row groups, column chunks, codecs); this module reads what pyarrow
does not expose, the pages inside a column chunk. ``pages`` walks a chunk's page headers
(Thrift compact protocol) once and gives each page's place, size and first row; ``value``
then reads one row's bytes from one page: the page read and decompressed, its levels and
values decoded (PLAIN, or dictionary indices into the chunk's dictionary page). A chunk laid
out in a way this does not read (an encoding other than these, a repeated column) raises
``Unsupported``, and the caller reads the row group through pyarrow instead.
"""

from __future__ import annotations

import struct
from typing import Callable, NamedTuple, Optional

from ..errors import FormatError
from .protowire import read_varint

DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 1, 2, 3
PLAIN, PLAIN_DICTIONARY, RLE, RLE_DICTIONARY = 0, 2, 3, 8
CODECS = {"UNCOMPRESSED": None, "SNAPPY": "snappy", "GZIP": "gzip", "ZSTD": "zstd",
          "BROTLI": "brotli", "LZ4_RAW": "lz4_raw"}
HEADER_READ = 1024  # bytes read for a page header; more when its statistics are longer


class Unsupported(Exception):
    """A layout this reader does not decode; read the row group whole instead."""


class Page(NamedTuple):
    kind: int  # DATA_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2
    body: int  # file offset of the (compressed) body
    size: int  # compressed body bytes
    raw_size: int  # uncompressed body bytes
    values: int  # values (rows, for an unrepeated column) in the page, nulls included
    encoding: int
    levels: tuple[int, int]  # V2: bytes of repetition, definition levels (uncompressed)
    compressed: bool  # V2 may store a page uncompressed in a compressed chunk


# --- Thrift compact protocol ---------------------------------------------------------------
def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _value(buf: bytes, pos: int, kind: int) -> tuple[object, int]:
    if kind in (1, 2):  # a bool field: the value is the type
        return kind == 1, pos
    if kind == 3:
        return struct.unpack_from("<b", buf, pos)[0], pos + 1
    if kind in (4, 5, 6):
        raw, pos = read_varint(buf, pos)
        return _zigzag(raw), pos
    if kind == 7:
        return None, pos + 8
    if kind == 8:
        size, pos = read_varint(buf, pos)
        if pos + size > len(buf):
            raise IndexError("binary past the end")
        return None, pos + size  # statistics' min/max: not needed
    if kind in (9, 10):
        head = buf[pos]
        pos += 1
        size, elem = head >> 4, head & 0x0F
        if size == 15:
            size, pos = read_varint(buf, pos)
        for _ in range(size):
            _, pos = (None, pos + 1) if elem in (1, 2) else _value(buf, pos, elem)
        return None, pos
    if kind == 11:
        size, pos = read_varint(buf, pos)
        if size:
            types = buf[pos]
            pos += 1
            for _ in range(size):
                _, pos = _value(buf, pos, types >> 4)
                _, pos = _value(buf, pos, types & 0x0F)
        return None, pos
    if kind == 12:
        return _struct(buf, pos)
    raise ValueError(f"unknown Thrift type {kind}")


def _struct(buf: bytes, pos: int) -> tuple[dict[int, object], int]:
    fields: dict[int, object] = {}
    last = 0
    while True:
        if pos >= len(buf):
            raise IndexError("struct past the end")
        head = buf[pos]
        pos += 1
        if head == 0:
            return fields, pos
        delta, kind = head >> 4, head & 0x0F
        if delta:
            field = last + delta
        else:
            raw, pos = read_varint(buf, pos)
            field = _zigzag(raw)
        fields[field], pos = _value(buf, pos, kind)
        last = field


def page_header(read: Callable[[int, int], bytes], offset: int, end: int, where: str
                ) -> tuple[dict[int, object], int]:
    """The PageHeader at ``offset`` (fields by Thrift id) and the offset of its body."""
    want = min(HEADER_READ, end - offset)
    while True:
        buf = read(offset, want)
        try:
            header, used = _struct(buf, 0)
            return header, offset + used
        except (IndexError, FormatError):  # ran past what was read: read more, if there is more
            if want >= end - offset or len(buf) < want:
                raise FormatError(f"{where}: the page header at offset {offset} runs past its "
                                  "column chunk: the file is truncated or damaged") from None
            want = min(want * 8, end - offset)
        except (ValueError, struct.error):
            raise FormatError(f"{where}: the page header at offset {offset} is damaged") from None


def pages(read: Callable[[int, int], bytes], start: int, size: int, where: str) -> list[Page]:
    """Every page of the column chunk at ``start`` (``size`` bytes), in order."""
    found, offset, end = [], start, start + size
    while offset < end:
        header, body = page_header(read, offset, end, where)
        kind = header.get(1)
        raw_size, comp_size = header.get(2), header.get(3)
        if not isinstance(raw_size, int) or not isinstance(comp_size, int) or comp_size < 0 \
                or body + comp_size > end:
            raise FormatError(f"{where}: the page at offset {offset} has a damaged size")
        if kind == DATA_PAGE:
            info = header.get(5)
            assert isinstance(info, dict)
            found.append(Page(kind, body, comp_size, raw_size, int(info[1]), int(info[2]),
                              (0, 0), True))
        elif kind == DATA_PAGE_V2:
            info = header.get(8)
            assert isinstance(info, dict)
            found.append(Page(kind, body, comp_size, raw_size, int(info[1]), int(info[4]),
                              (int(info[6]), int(info[5])), bool(info.get(7, True))))
        elif kind == DICTIONARY_PAGE:
            info = header.get(7)
            assert isinstance(info, dict)
            found.append(Page(kind, body, comp_size, raw_size, int(info[1]), int(info[2]),
                              (0, 0), True))
        elif kind != INDEX_PAGE:
            raise FormatError(f"{where}: unknown page type {kind} at offset {offset}")
        offset = body + comp_size
    return found


# --- page bodies ------------------------------------------------------------------------------
def decompress(data: bytes, raw_size: int, codec: str, where: str) -> bytes:
    name = CODECS.get(codec.upper(), "?")
    if name == "?":
        raise Unsupported(codec)
    if name is None:
        return data
    import pyarrow as pa

    try:
        return pa.decompress(data, raw_size, codec=name).to_pybytes()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise FormatError(f"{where}: a {codec} page does not decompress ({exc}): the file is "
                          "damaged") from None


def hybrid(buf: bytes, pos: int, end: int, width: int, count: int) -> list[int]:
    """``count`` values of Parquet's RLE / bit-packed hybrid encoding at ``buf[pos:end]``."""
    out: list[int] = []
    mask = (1 << width) - 1
    nbytes = (width + 7) // 8
    while len(out) < count:
        if pos >= end:
            raise IndexError("levels past the end")
        head, pos = read_varint(buf, pos)
        if head & 1:  # bit-packed: groups of 8 values
            groups = head >> 1
            chunk = int.from_bytes(buf[pos:pos + groups * width], "little")
            pos += groups * width
            out.extend((chunk >> (i * width)) & mask for i in range(groups * 8))
        else:
            value = int.from_bytes(buf[pos:pos + nbytes], "little")
            pos += nbytes
            out.extend([value] * (head >> 1))
    return out[:count]


def _plain(buf: bytes, pos: int, end: int, skip: int) -> tuple[bytes, int]:
    """The ``skip``-th PLAIN byte-array value from ``pos`` (each: 4-byte length, bytes)."""
    for _ in range(skip):
        pos += 4 + int.from_bytes(buf[pos:pos + 4], "little")
    size = int.from_bytes(buf[pos:pos + 4], "little")
    if pos + 4 + size > end:
        raise IndexError("value past the end")
    return buf[pos + 4:pos + 4 + size], pos


def value(page: Page, body: bytes, row: int, max_def: int, codec: str,
          dictionary: Optional[Callable[[], list[bytes]]], where: str) -> Optional[bytes]:
    """Row ``row`` (counted from the page's first) of an unrepeated binary column: its bytes,
    or None for a null; ``body`` is the page as stored, ``dictionary`` gives the chunk's
    dictionary values when the page holds indices into it."""
    if page.encoding not in (PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY):
        raise Unsupported(f"encoding {page.encoding}")
    if page.kind == DATA_PAGE_V2:  # levels stored uncompressed ahead of the values
        levels = page.levels[0] + page.levels[1]
        data = body[levels:]
        if page.compressed:
            data = decompress(data, page.raw_size - levels, codec, where)
        defs = body[page.levels[0]:levels]
        buf, pos, def_range = defs + data, len(defs), (0, len(defs))
    else:
        buf = decompress(body, page.raw_size, codec, where)
        pos, def_range = 0, (0, 0)
    try:
        if page.kind != DATA_PAGE_V2 and max_def:
            size = int.from_bytes(buf[0:4], "little")
            def_range, pos = (4, 4 + size), 4 + size
        present = row
        if max_def:
            levels_of = hybrid(buf, def_range[0], def_range[1], max_def.bit_length(), row + 1)
            if levels_of[row] != max_def:
                return None
            present = sum(1 for level in levels_of[:row] if level == max_def)
        if page.encoding == PLAIN:
            return _plain(buf, pos, len(buf), present)[0]
        width = buf[pos]
        index = hybrid(buf, pos + 1, len(buf), width, present + 1)[present] if width else 0
    except (IndexError, ValueError, FormatError):
        raise FormatError(f"{where}: a data page is damaged (its levels or values run past "
                          "its end)") from None
    if dictionary is None:
        raise FormatError(f"{where}: a dictionary-encoded page without a dictionary page")
    values = dictionary()
    if index >= len(values):
        raise FormatError(f"{where}: dictionary index {index} of {len(values)} values")
    return values[index]


def plain_cells(read: Callable[[int, int], bytes], page: Page, max_def: int, codec: str,
                where: str) -> Optional[list[tuple[int, int]]]:
    """Each row's (file offset, size) of its value, (-1, 0) for a null, when the page stores
    PLAIN values uncompressed (as HF writes image columns): a row is then one ``pread`` of its
    own bytes. None for any other page (read and decode the page whole)."""
    raw = CODECS.get(codec.upper(), "?") is None or (page.kind == DATA_PAGE_V2 and not page.compressed)
    if page.encoding != PLAIN or not raw or page.kind == DICTIONARY_PAGE:
        return None
    end = page.body + page.size
    try:
        if page.kind == DATA_PAGE_V2:
            defs_at, defs_size = page.body + page.levels[0], page.levels[1]
            pos = page.body + page.levels[0] + page.levels[1]
        elif max_def:
            defs_at, defs_size = page.body + 4, int.from_bytes(read(page.body, 4), "little")
            pos = defs_at + defs_size
        else:
            defs_at = defs_size = 0
            pos = page.body
        present = [True] * page.values
        if max_def:
            levels = hybrid(read(defs_at, defs_size), 0, defs_size, max_def.bit_length(),
                            page.values)
            present = [level == max_def for level in levels]
        cells = []
        for here in present:
            if not here:
                cells.append((-1, 0))
                continue
            size = int.from_bytes(read(pos, 4), "little")
            if pos + 4 + size > end:
                raise IndexError("value past the end")
            cells.append((pos + 4, size))
            pos += 4 + size
        return cells
    except (IndexError, ValueError, FormatError):
        raise FormatError(f"{where}: a data page is damaged (its levels or values run past "
                          "its end)") from None


def dictionary_values(page: Page, body: bytes, codec: str, where: str) -> list[bytes]:
    """The values of a dictionary page (PLAIN byte arrays)."""
    buf = decompress(body, page.raw_size, codec, where)
    values, pos = [], 0
    try:
        for _ in range(page.values):
            item, pos = _plain(buf, pos, len(buf), 0)
            values.append(item)
            pos += 4 + len(item)
    except IndexError:
        raise FormatError(f"{where}: the dictionary page is damaged") from None
    return values
