"""Just enough protobuf wire format for tf.train.Example and caffe.Datum, in both directions.

No generated code and no protobuf runtime: the two messages are tiny, and a hand-written codec
parses them without pickle, rejects malformed bytes with FormatError, and stays fast.
"""

from __future__ import annotations

import struct
from typing import Any, Optional, Union

from ..errors import FormatError
from .checksum import crc32c

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5
Feature = Union[bytes, int, list[int], list[bytes], list[float]]


# --- encoding ------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> ten-byte two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    head = _varint((number << 3) | wire)
    if wire == BYTES:
        return head + _varint(len(payload)) + payload
    return head + payload


def encode_example(features: dict[str, Feature]) -> bytes:
    """tf.train.Example; bytes/list[bytes] -> BytesList, int/list[int] -> Int64List (packed),
    list[float] -> FloatList; a numpy array by its dtype (integers: Int64List, floating:
    FloatList), which types an empty list too. Keys are written sorted, so equal inputs give
    equal bytes."""
    entries = []
    for key in sorted(features):
        number, values = _typed(key, features[key])
        if number == 1:  # BytesList
            payload = b"".join(_field(1, BYTES, v) for v in values)
        elif number == 3:  # Int64List
            payload = _field(1, BYTES, b"".join(_varint(v) for v in values))
        else:  # FloatList
            payload = _field(1, BYTES, struct.pack(f"<{len(values)}f", *values))
        entry = _field(1, BYTES, key.encode("utf-8")) + _field(2, BYTES, _field(number, BYTES, payload))
        entries.append(_field(1, BYTES, entry))
    return _field(1, BYTES, b"".join(entries))


def _typed(key: str, value: Any) -> tuple[int, list]:
    """A feature's values and its list's field number in tf.train.Feature (1 bytes, 2 float,
    3 int64)."""
    if isinstance(value, (bytes, int)):
        value = [value]
    elif hasattr(value, "dtype"):  # a numpy array: typed by its dtype, even when empty
        if value.dtype.kind in "iu":
            return 3, [int(v) for v in value.ravel()]
        if value.dtype.kind == "f":
            return 2, [float(v) for v in value.ravel()]
        raise TypeError(f"feature {key!r}: a {value.dtype} array; give integers or floats")
    if all(isinstance(v, bytes) for v in value):
        return 1, list(value)
    if all(isinstance(v, int) for v in value):
        return 3, list(value)
    if all(isinstance(v, float) for v in value):
        return 2, list(value)
    raise TypeError(f"feature {key!r}: values must be all bytes, all int or all float")


DATUM_CRC = 100  # fastload's field: CRC32C of Datum.data (fixed32); Caffe and DALI skip it


def encode_datum(data: bytes, label: int) -> bytes:
    """caffe.Datum with encoded=true: the image file's bytes, its label, and the CRC32C of the
    bytes in field ``DATUM_CRC`` (an unknown field to Caffe's and DALI's parsers)."""
    return (_field(4, BYTES, data) + _field(5, VARINT, _varint(label)) + _field(7, VARINT, _varint(1))
            + _field(DATUM_CRC, FIXED32, struct.pack("<I", crc32c(data))))


# --- decoding ------------------------------------------------------------------------------
def read_varint(buf: "Buffer", pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise FormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise FormatError("varint longer than 10 bytes")


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


Buffer = Union[bytes, memoryview]


def fields(buf: Buffer) -> list[tuple[int, int, Union[int, Buffer]]]:
    """(field number, wire type, value) for each field of one message, in order. Slices of a
    memoryview are views: nested messages and payloads are not copied while parsing."""
    out = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FormatError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire == BYTES:
            size, pos = read_varint(buf, pos)
            if pos + size > end:
                raise FormatError(f"field {number}: length {size} runs past the message end")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > end:
                raise FormatError(f"field {number}: truncated fixed{width * 8}")
            value, pos = buf[pos:pos + width], pos + width
        else:
            raise FormatError(f"field {number}: unsupported wire type {wire}")
        out.append((number, wire, value))
    return out


def _expect_bytes(wire: int, value: Union[int, Buffer], what: str) -> Buffer:
    if wire != BYTES:
        raise FormatError(f"{what}: expected a length-delimited field, found wire type {wire}")
    return value  # type: ignore[return-value]


def _decode_feature(buf: Buffer, key: str) -> Feature:
    for number, wire, value in fields(buf):
        body = _expect_bytes(wire, value, f"feature {key!r}")
        items = fields(body)
        if number == 1:  # BytesList
            return [bytes(_expect_bytes(w, v, f"feature {key!r}")) for n, w, v in items if n == 1]
        if number == 3:  # Int64List, packed or not
            ints: list[int] = []
            for n, w, v in items:
                if n != 1:
                    continue
                if w == VARINT:
                    ints.append(_signed(v))  # type: ignore[arg-type]
                else:
                    packed, pos = _expect_bytes(w, v, f"feature {key!r}"), 0
                    while pos < len(packed):
                        x, pos = read_varint(packed, pos)
                        ints.append(_signed(x))
            return ints
        if number == 2:  # FloatList, packed or not
            floats: list[float] = []
            for n, w, v in items:
                if n == 1:
                    raw = v if w in (FIXED32, BYTES) else b""
                    if len(raw) % 4:  # type: ignore[arg-type]
                        raise FormatError(f"feature {key!r}: float list of {len(raw)} bytes")  # type: ignore[arg-type]
                    floats.extend(struct.unpack(f"<{len(raw) // 4}f", bytes(raw)))  # type: ignore[arg-type]
            return floats
    return []


def decode_example(buf: Buffer, keys: Optional[frozenset] = None) -> dict[str, Feature]:
    """tf.train.Example -> {key: list of values}; with ``keys``, only those features' values
    are parsed (the others are skipped: a reader needs two of six)."""
    out: dict[str, Feature] = {}
    for number, wire, value in fields(memoryview(buf)):
        if number != 1:
            continue
        for n, w, entry in fields(_expect_bytes(wire, value, "Example.features")):
            if n != 1:
                continue
            key, feature = "", b""
            for en, ew, ev in fields(_expect_bytes(w, entry, "Features.feature")):
                if en == 1:
                    key = bytes(_expect_bytes(ew, ev, "feature key")).decode("utf-8", "replace")
                elif en == 2:
                    feature = _expect_bytes(ew, ev, f"feature {key!r}")
            if keys is None or key in keys:
                out[key] = _decode_feature(feature, key)
    return out


def decode_datum(buf: Buffer) -> tuple[bytes, int, bool, Optional[int]]:
    """caffe.Datum -> (data, label, encoded, the stored CRC32C of data or None)."""
    data, label, encoded, crc = b"", 0, False, None
    for number, wire, value in fields(memoryview(buf)):
        if number == 4:
            data = bytes(_expect_bytes(wire, value, "Datum.data"))
        elif number == 5 and wire == VARINT:
            label = _signed(value)  # type: ignore[arg-type]
            label = label - (1 << 32) if label >= 1 << 31 else label
        elif number == 7 and wire == VARINT:
            encoded = bool(value)
        elif number == DATUM_CRC and wire == FIXED32:
            crc = int.from_bytes(value, "little")  # type: ignore[arg-type]
    return data, label, encoded, crc
