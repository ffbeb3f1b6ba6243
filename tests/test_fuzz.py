"""Fuzzing: random and mutated bytes only ever produce fastload's own error types."""

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastload.errors import FastloadError, FormatError
from fastload.formats import protowire
from fastload.formats import tfrecord
from fastload.sources import TFRecordSource

EXAMPLE = protowire.encode_example({"image/encoded": b"\xff\xd8" + bytes(range(40)),
                                    "image/class/label": 7, "image/filename": b"a/b.jpg",
                                    "floats": [1.5, -2.0]})
DATUM = protowire.encode_datum(b"\x89PNG" + bytes(30), 3)
FRAMED = tfrecord.frame(EXAMPLE)

mutations = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8)


def mutate(data: bytes, changes) -> bytes:
    buf = bytearray(data)
    for pos, value in changes:
        buf[pos % len(buf)] = value
    return bytes(buf)


def only_format_errors(fn, data):
    try:
        fn(data)
    except FormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_as_messages(data):
    only_format_errors(protowire.decode_example, data)
    only_format_errors(protowire.decode_datum, data)
    only_format_errors(lambda b: tfrecord.unframe(b, "fuzz"), data)


@settings(max_examples=300, deadline=None)
@given(mutations, st.integers(0, len(EXAMPLE)))
def test_mutated_and_truncated_messages(changes, cut):
    only_format_errors(protowire.decode_example, mutate(EXAMPLE, changes)[:cut])
    only_format_errors(protowire.decode_datum, mutate(DATUM, changes)[:cut])
    only_format_errors(lambda b: tfrecord.unframe(b, "fuzz"), mutate(FRAMED, changes))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations)
def test_mutated_shard_files(tmp_path, changes):
    path = tmp_path / "fuzz.tfrecord"
    path.write_bytes(mutate(FRAMED * 3, changes))
    try:
        tfrecord.scan(path)
        source = TFRecordSource(path, build_missing_index=True)
        for i in range(len(source)):
            source.read(i)
    except FastloadError:  # FormatError for damaged bytes, SourceError for an empty result
        pass
    finally:
        for p in tmp_path.iterdir():
            p.unlink()


def test_the_fuzzers_see_valid_input_too():
    assert protowire.decode_example(EXAMPLE)["image/class/label"] == [7]
    with pytest.raises(FormatError):
        tfrecord.unframe(mutate(FRAMED, [(20, 0)]), "x")


try:
    from fastload.formats import _wire
except ImportError:  # the C extension is optional
    _wire = None
needs_wire = pytest.mark.skipif(_wire is None, reason="fastload.formats._wire not built")
KEYS = (b"image/encoded", b"image/class/label")


def python_features(buf):
    """What TFRecordSource.read returns by the pure-Python path (the C reader not built), or
    None where it refuses the record."""
    from unittest import mock

    from fastload.sources import tfrecord as source_module

    with mock.patch.object(source_module, "_wire", None):
        try:
            return source_module.image_and_label(buf, KEYS, "record")
        except FormatError:
            return None


def c_features(buf):
    found = _wire.example_features(buf, *KEYS)
    if found is None:
        return None
    offset, length, label = found
    assert 0 <= offset and offset + length <= len(buf)
    return buf[offset:offset + length], label


@needs_wire
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(-2 ** 63, 2 ** 63 - 1), st.booleans(),
       st.dictionaries(st.text(max_size=8), st.binary(max_size=20), max_size=3))
def test_the_c_reader_agrees_with_protowire_on_valid_examples(image, label, packed, others):
    features = {k: v for k, v in others.items() if k not in ("image/encoded", "image/class/label")}
    features.update({"image/encoded": image, "image/class/label": [label, 5] if packed else label})
    buf = protowire.encode_example(features)
    assert c_features(buf) == python_features(buf) == (image, label)


@needs_wire
@settings(max_examples=400, deadline=None)
@given(mutations, st.integers(0, len(EXAMPLE)))
@example(changes=[(3158, 0)], cut=151)  # field number 0 in another feature's map entry
@example(changes=[(1524, 0)], cut=151)  # a map entry with its feature given twice
@example(changes=[(0, 0x08)], cut=151)  # Example.features not length-delimited
def test_the_c_reader_on_mutated_examples_is_none_or_what_protowire_reads(changes, cut):
    buf = mutate(EXAMPLE, changes)[:cut]
    got = c_features(buf)
    assert got is None or got == python_features(buf)


@needs_wire
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_the_c_reader_on_random_bytes(buf):
    got = c_features(buf)
    assert got is None or got == python_features(buf)


_RESTART_JPEG = []


def _restart_jpeg():
    """A photo-like 120x90 JPEG with a restart marker every 2 MCUs (made once)."""
    if not _RESTART_JPEG:
        from conftest import jpeg_bytes, photo

        from fastload import _jpeg

        _RESTART_JPEG.append(_jpeg.add_restarts(jpeg_bytes(photo(120, 90)), 2))
    return _RESTART_JPEG[0]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations, st.integers(0, 100_000), st.integers(0, 89), st.integers(0, 119))
def test_the_region_decoder_on_mutated_restart_jpegs(changes, cut, top, left):
    """Marker lengths, frame sizes, restart intervals and entropy data mutated, the data cut
    anywhere: the segment cutter and libjpeg give a box of the right size, None (the caller's
    full decoder then judges), or EOFError; never a crash or a read past the data."""
    _jpeg = pytest.importorskip("fastload._jpeg")
    data = mutate(_restart_jpeg(), changes)
    data = data[: max(2, cut % (len(data) + 1))] if cut % 3 == 0 else data
    h, w = 90 - top, 120 - left
    for reduce in (1, 2):
        try:
            out = _jpeg.decode_region(data, reduce, top // reduce, left // reduce,
                                      max(1, h // reduce), max(1, w // reduce), 4)
        except EOFError:
            continue
        assert out is None or len(out) == max(1, h // reduce) * max(1, w // reduce) * 4
    rewritten = _jpeg.add_restarts(data, 2)
    assert rewritten is None or rewritten[:2] == b"\xff\xd8"


def test_an_image_or_label_feature_of_the_wrong_kind_is_named():
    from fastload.sources.tfrecord import image_and_label

    record = protowire.encode_example({"image/encoded": [5], "image/class/label": 3})
    with pytest.raises(FormatError, match="shard-0 record 4: 'image/encoded' must be a "
                                          "BytesList .* found a list of int"):
        image_and_label(record, KEYS, "shard-0 record 4")
