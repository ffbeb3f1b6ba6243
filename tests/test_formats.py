"""Wire formats: protobuf messages, TFRecord framing, index files, manifest."""

import struct

import pytest

from fastload.errors import FormatError
from fastload.formats import protowire
from fastload.formats import tfrecord


def test_example_round_trip_and_determinism():
    features = {"image/encoded": b"\xff\xd8jpeg", "image/class/label": 7, "neg": [-3, 0, 2 ** 40],
                "names": [b"a", b""], "floats": [0.5, -1.25]}
    buf = protowire.encode_example(features)
    assert buf == protowire.encode_example(dict(reversed(list(features.items()))))
    out = protowire.decode_example(buf)
    assert out == {"image/encoded": [b"\xff\xd8jpeg"], "image/class/label": [7], "neg": [-3, 0, 2 ** 40],
                   "names": [b"a", b""], "floats": [0.5, -1.25]}


def test_example_matches_the_protobuf_library():
    example_pb2 = pytest.importorskip("tfrecord.example_pb2")
    ours = protowire.encode_example({"a": b"xyz", "b": [1, -2]})
    theirs = example_pb2.Example()
    theirs.ParseFromString(ours)
    assert theirs.features.feature["a"].bytes_list.value == [b"xyz"]
    assert list(theirs.features.feature["b"].int64_list.value) == [1, -2]
    ref = example_pb2.Example()
    ref.features.feature["c"].int64_list.value.extend([5, 300])
    ref.features.feature["d"].float_list.value.append(2.5)
    assert protowire.decode_example(ref.SerializeToString()) == {"c": [5, 300], "d": [2.5]}


def test_datum_round_trip():
    buf = protowire.encode_datum(b"\x89PNG...", 42)
    crc = protowire.crc32c(b"\x89PNG...")
    assert protowire.decode_datum(buf) == (b"\x89PNG...", 42, True, crc)
    assert protowire.decode_datum(buf[:-6]) == (b"\x89PNG...", 42, True, None)  # no CRC field
    assert protowire.decode_datum(protowire.encode_datum(b"x", -1))[1] == -1


@pytest.mark.parametrize("buf", [b"\x0a\x05ab", b"\x08" + b"\xff" * 11, b"\x00\x01", b"\x0b"])
def test_malformed_messages_raise_format_error(buf):
    with pytest.raises(FormatError):
        protowire.decode_example(buf)


def test_framing_and_crc_known_value():
    # CRC32C("123456789") = 0xE3069283 (RFC 3720); masked as TensorFlow does
    crc = 0xE3069283
    assert tfrecord.masked_crc(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    framed = tfrecord.frame(b"hello")
    assert len(framed) == 5 + 16 and struct.unpack("<Q", framed[:8])[0] == 5
    assert tfrecord.unframe(framed, "x") == b"hello"


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-1], "index gives"),
    (lambda b: b[:8] + b"\0\0\0\0" + b[12:], "length CRC mismatch"),
    (lambda b: b[:13] + b"X" + b[14:], "data CRC mismatch"),
    (lambda b: b[:10], "shorter than its framing"),
])
def test_damaged_record_is_named(damage, message):
    with pytest.raises(FormatError, match=f"shard.tfrecord record 3: .*{message}"):
        tfrecord.unframe(damage(tfrecord.frame(b"payload!")), "shard.tfrecord record 3")


def test_scan_index_and_staleness(tmp_path):
    path = tmp_path / "a.tfrecord"
    with open(path, "wb") as f:
        rows = tfrecord.write_records(f, [b"a" * 10, b"", b"c" * 300])
    assert tfrecord.scan(path).tolist() == rows.tolist() == [[0, 26], [26, 16], [42, 316]]
    tfrecord.write_index(rows, tfrecord.index_path(path))
    assert tfrecord.index_path(path).read_text() == "0 26\n26 16\n42 316\n"
    assert tfrecord.read_index(tfrecord.index_path(path), path).tolist() == rows.tolist()
    with open(path, "ab") as f:
        f.write(tfrecord.frame(b"new"))
    with pytest.raises(FormatError, match="stale: rebuild it with `fastload index"):
        tfrecord.read_index(tfrecord.index_path(path), path)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(FormatError, match="record at offset 42 needs 316 bytes .* truncated"):
        tfrecord.scan(path)
    (tmp_path / "b.tfrecord").write_bytes(b"not a tfrecord file at all")
    with pytest.raises(FormatError, match="length CRC mismatch at offset 0"):
        tfrecord.scan(tmp_path / "b.tfrecord")
    (tmp_path / "c.idx").write_text("zero one\n")
    with pytest.raises(FormatError, match="not an index file"):
        tfrecord.read_index(tmp_path / "c.idx", path)


def test_a_flipped_length_byte_is_named_as_damage_not_a_stale_index():
    framed = bytearray(tfrecord.frame(b"payload!"))
    framed[0] ^= 0x04  # the record now claims 12 data bytes; its length CRC disagrees
    with pytest.raises(FormatError, match="shard.tfrecord record 3: the record's length field "
                                          "is damaged") as caught:
        tfrecord.unframe(bytes(framed), "shard.tfrecord record 3")
    assert "fastload index" not in str(caught.value)


def test_a_truncated_shard_is_named_as_truncated_and_a_grown_one_as_a_stale_index(tmp_path):
    path = tmp_path / "a.tfrecord"
    with open(path, "wb") as f:
        rows = tfrecord.write_records(f, [b"a" * 10, b"b" * 20, b"c" * 300])
    tfrecord.write_index(rows, tfrecord.index_path(path))
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])
    with pytest.raises(FormatError, match=r"a.tfrecord: holds 278 bytes but its index .* covers "
                                          r"378: the shard is truncated") as caught:
        tfrecord.read_index(tfrecord.index_path(path), path)
    assert "rebuild it with" not in str(caught.value)
    with pytest.raises(FormatError, match="truncated"):  # what `fastload index` would say
        tfrecord.scan(path)
    path.write_bytes(whole + tfrecord.frame(b"more"))
    with pytest.raises(FormatError, match="stale: rebuild it with `fastload index"):
        tfrecord.read_index(tfrecord.index_path(path), path)
    tfrecord.write_index(tfrecord.scan(path), tfrecord.index_path(path))  # ...and it works


def test_verify_names_an_index_with_two_rows_merged(jpeg_folder, tmp_path):
    from fastload.tools.convert import convert
    from fastload.tools.verify import build_index, verify

    convert(jpeg_folder, tmp_path / "t", shards=2)
    idx = next((tmp_path / "t").glob("*.idx"))
    lines = idx.read_text().splitlines()
    offset, _ = lines[3].split()
    _, length = lines[4].split()
    merged = lines[:3] + [f"{offset} {int(lines[3].split()[1]) + int(length)}"] + lines[5:]
    idx.write_text("\n".join(merged) + "\n")
    report = verify(tmp_path / "t")
    assert not report.ok and "its index does not match the records" in report.summary()
    assert "`fastload index" in report.summary()
    build_index(str(idx)[:-len(".idx")])
    assert verify(tmp_path / "t").ok
