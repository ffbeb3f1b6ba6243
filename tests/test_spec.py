"""The pipeline spec: validation, order, round trip, presets, light import."""

import json
import subprocess
import sys

import pytest

import fastload as fl
from fastload.errors import SpecError


def test_ops_normalize_and_validate_parameters():
    assert fl.RandomResizedCrop(224).size == (224, 224)
    assert fl.RandomResizedCrop([160, 128]).size == (160, 128)
    assert fl.RandomErasing(value=[1, 2, 3]).value == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("make, message", [
    (lambda: fl.RandomResizedCrop(224, scale=(0.9, 0.1)), "RandomResizedCrop: scale=(0.9, 0.1) must be increasing"),
    (lambda: fl.RandomResizedCrop(0), "RandomResizedCrop: size=(0, 0) must be positive"),
    (lambda: fl.RandomResizedCrop(224, ratio=(0, 1)), "RandomResizedCrop: ratio=(0, 1) must lie within"),
    (lambda: fl.RandomFlip(p=1.5), "RandomFlip: p=1.5 must be a probability"),
    (lambda: fl.Normalize(std=(0.2, 0, 0.2)), "Normalize: std=(0.2, 0.0, 0.2) must be positive"),
    (lambda: fl.Normalize(mean=(1, 2)), "Normalize: mean=(1, 2) must be 3 finite numbers"),
    (lambda: fl.Normalize(dtype="int8"), "Normalize: dtype='int8' must be one of"),
    (lambda: fl.RandomErasing(value="noise"), "RandomErasing: value='noise' must be"),
    (lambda: fl.Resize(-3), "Resize: size=-3 must be positive"),
    (lambda: fl.Resize(), "Resize: give size (the shorter side, or (height, width)) or max_size"),
    (lambda: fl.Resize(64, max_size=64), "Resize: max_size=64 must be greater than size=64"),
    (lambda: fl.Resize((64, 80), max_size=100), "Resize: max_size bounds the longer side"),
    (lambda: fl.Resize(None, max_size=0), "Resize: max_size=0 must be a positive int"),
    (lambda: fl.CenterCrop("big"), "CenterCrop: size='big' must be an int"),
])
def test_bad_parameters_name_the_op_and_value(make, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize("ops, message", [
    ((fl.RandomResizedCrop(8),), "must start with Decode"),
    ((fl.Decode(),), "needs a geometry op"),
    ((fl.Decode(), fl.Resize(8)), "add CenterCrop"),
    ((fl.Decode(), fl.RandomResizedCrop(8), fl.CenterCrop(4)), "geometry RandomResizedCrop \\+ CenterCrop"),
    ((fl.Decode(), fl.RandomResizedCrop(8), fl.RandomErasing()), "needs Normalize before it"),
    ((fl.Decode(), fl.RandomResizedCrop(8), fl.Normalize(), fl.RandomFlip()), "RandomFlip is out of place"),
    ((fl.Decode(), fl.CenterCrop(8), fl.Normalize(), fl.Normalize()), "Normalize is out of place"),
    ((fl.Decode(), "resize"), "item 1 is 'resize', not a fastload op"),
])
def test_bad_order_is_rejected_with_the_op_named(ops, message):
    with pytest.raises(SpecError, match=message):
        fl.Pipeline(*ops)


def test_output_size_and_describe():
    ints = {"shape": (), "dtype": "int64"}
    assert fl.presets.imagenet_train(160).describe() == {"shape": (3, 160, 160),
                                                         "dtype": "float32", "labels": ints}
    assert fl.presets.imagenet_eval(224).ops[1] == fl.Resize(256)
    uint8 = fl.Pipeline(fl.Decode(), fl.Resize((32, 48)), fl.RandomFlip())
    assert uint8.describe() == {"shape": (3, 32, 48), "dtype": "uint8", "labels": ints}
    mixed = fl.Pipeline(fl.Decode(), fl.Resize((8, 8)), fl.Normalize(), fl.CutMix(num_classes=5))
    assert mixed.describe()["labels"] == {"shape": (5,), "dtype": "float32"}
    half = fl.Pipeline(fl.Decode(), fl.CenterCrop(8), fl.Normalize(dtype="bfloat16"))
    assert half.output_dtype == "bfloat16"


def test_round_trip_through_json_and_value_semantics():
    for pipeline in (fl.presets.imagenet_train(192), fl.presets.imagenet_eval(224),
                     fl.Pipeline(fl.Decode(), fl.Resize((10, 20)), fl.Normalize(),
                                 fl.RandomErasing(value="random", p=1.0))):
        text = pipeline.to_json()
        again = fl.Pipeline.from_json(text)
        assert again == pipeline and hash(again) == hash(pipeline)
        assert json.loads(text)["version"] == 1
    assert fl.presets.imagenet_train(224) != fl.presets.imagenet_train(192)
    assert "RandomResizedCrop(size=(224, 224)" in repr(fl.presets.imagenet_train())
    with pytest.raises(AttributeError):
        fl.presets.imagenet_train().ops = ()


@pytest.mark.parametrize("data, message", [
    ({"ops": [{"op": "Blur"}]}, "unknown op 'Blur'"),
    ({"ops": [{"op": "Decode", "fast": True}]}, "Decode: unknown field"),
    ({"version": 7, "ops": []}, "version 7 is not supported"),
    ({"op": []}, "must look like"),
])
def test_from_dict_rejects_bad_input(data, message):
    with pytest.raises(SpecError, match=message):
        fl.Pipeline.from_dict(data)


def test_from_json_rejects_invalid_json():
    with pytest.raises(SpecError, match="not valid JSON"):
        fl.Pipeline.from_json("{ops: ")


def test_import_fastload_imports_neither_dali_nor_torch():
    code = "import sys, fastload; print('nvidia.dali' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_geometry_is_one_value_for_every_form():
    from fastload.ops.spec import Geometry

    rrc = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(32, scale=(0.3, 1.0)))
    assert rrc.geometry == Geometry((32, 32), random_crop=((0.3, 1.0), (3 / 4, 4 / 3)))
    assert rrc.geometry.random and not rrc.geometry.may_exceed_image()
    shorter = fl.Pipeline(fl.Decode(), fl.Resize(40), fl.CenterCrop(32)).geometry
    assert shorter == Geometry((32, 32), resize=40, crop=(32, 32))
    assert shorter.resized(100, 200) == (40, 80) and shorter.resized(200, 100) == (80, 40)
    assert not shorter.may_exceed_image()
    letterbox = fl.Pipeline(fl.Decode(), fl.Resize(None, max_size=320), fl.CenterCrop(320)).geometry
    assert letterbox == Geometry((320, 320), crop=(320, 320), resize_max=320)
    assert letterbox.resized(480, 640) == (240, 320) and letterbox.resized(641, 480) == (320, 239)
    assert letterbox.may_exceed_image()
    bounded = fl.Pipeline(fl.Decode(), fl.Resize(200, max_size=250), fl.CenterCrop(64)).geometry
    assert bounded.resized(100, 300) == (83, 250) and bounded.resized(100, 120) == (200, 240)
    exact = fl.Pipeline(fl.Decode(), fl.Resize((40, 50)), fl.CenterCrop((44, 20))).geometry
    assert exact.resized(7, 9) == (40, 50) and exact.may_exceed_image()  # 44 rows of 40
    assert fl.Pipeline(fl.Decode(), fl.CenterCrop(8)).geometry.may_exceed_image()
    scheduled = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(fl.by_epoch({0: 16, 2: 24})))
    with pytest.raises(fl.SpecError, match="follows the epoch"):
        scheduled.geometry
    assert scheduled.at_epoch(3).geometry.output_size == (24, 24)
