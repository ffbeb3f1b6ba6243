"""Targets beyond one class index: multi-label, per-sample fields, masks and boxes, through the
geometry of the image, on both backends.

The data: JPEGs of coloured rectangles on grey, each rectangle a class; the mask PNG paints the
same rectangles with their class, the boxes are the rectangles. So a mask that followed the
image's geometry agrees with the image's colours, pixel by pixel, and a box with its mask's
region.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import fastload as fl
from fastload.ops.draws import sample_rng
from fastload.ops.geometry import plan_sample

PALETTE = np.array([[128, 128, 128], [230, 30, 30], [30, 200, 40], [40, 60, 230]], np.uint8)


def scene(rng, width, height):
    """An image, its mask (0 background, classes 1..3) and its boxes [x0, y0, x1, y1, class]."""
    mask = np.zeros((height, width), np.uint8)
    boxes = []
    for cls in (1, 2, 3):
        w, h = int(rng.integers(width // 5, width // 2)), int(rng.integers(height // 5, height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        mask[y:y + h, x:x + w] = cls
        boxes.append([x, y, x + w, y + h, cls])
    # the last-painted class wins where rectangles overlap; boxes keep their full extent
    return PALETTE[mask], mask, boxes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(24):
        width, height = int(rng.integers(90, 160)), int(rng.integers(70, 130))
        image, mask, boxes = scene(rng, width, height)
        Image.fromarray(image).save(root / "images" / f"{i:03d}.jpg", quality=97)
        Image.fromarray(mask, "L").save(root / "masks" / f"{i:03d}.png")
        labels = sorted({int(c) for c in np.unique(mask) if c})
        lines.append({"path": f"images/{i:03d}.jpg", "label": labels,
                      "mask": f"masks/{i:03d}.png", "boxes": boxes,
                      "weight": float(i) / 10, "id": f"img{i:03d}"})
    with open(root / "train.jsonl", "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    return root, lines


TRAIN = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(64, scale=(0.3, 1.0)), fl.RandomFlip(),
                    fl.Normalize())
EVAL = fl.Pipeline(fl.Decode(), fl.Resize(72), fl.CenterCrop(64), fl.Normalize())
# detection-style eval: the whole image, its longer side 64, padded to a square
LETTERBOX = fl.Pipeline(fl.Decode(), fl.Resize(None, max_size=64), fl.CenterCrop(64),
                        fl.Normalize())


def batches(root, pipeline, backend="torch", **kwargs):
    source = fl.ListSource(root / "train.jsonl", num_classes=4)
    with fl.loader(source, pipeline, 8, backend=backend, num_workers=1, seed=3, **kwargs) as loader:
        return list(loader)


def reference_mask(mask, plan, pipeline, fill=255):
    """torchvision v2's arithmetic for a Mask, written out: RandomResizedCrop = crop, then
    resize nearest (F.interpolate "nearest"); Resize + CenterCrop = resize nearest, then crop
    (padding fill); then the flip."""
    t = torch.from_numpy(mask)[None, None]
    geometry = pipeline.geometry
    if geometry.random_crop is not None:
        top, left, h, w = (int(v) for v in plan.box)
        out = F.interpolate(t[..., top:top + h, left:left + w], size=plan.out_size, mode="nearest")
    else:  # torchvision's center_crop: pad an axis the crop exceeds ((crop - size) // 2 before)
        new = geometry.resized(*mask.shape)
        out = F.interpolate(t, size=new, mode="nearest")
        (oh, ow), (h, w) = plan.out_size, new
        pad = [max(0, ow - w) // 2, max(0, ow - w + 1) // 2, max(0, oh - h) // 2,
               max(0, oh - h + 1) // 2]
        out = F.pad(out, pad, value=fill)
        top, left = int(round((out.shape[2] - oh) / 2.0)), int(round((out.shape[3] - ow) / 2.0))
        out = out[..., top:top + oh, left:left + ow]
    out = out[0, 0]
    return out.flip(-1) if plan.flip else out


@pytest.mark.parametrize("pipeline", [TRAIN, EVAL, LETTERBOX], ids=["train", "eval", "letterbox"])
def test_masks_follow_the_images_geometry_as_torchvision_does(dataset, pipeline):
    root, lines = dataset
    seen = 0
    for batch in batches(root, pipeline):
        assert batch.masks.dtype == torch.int64 and batch.masks.shape == (len(batch.labels), 64, 64)
        for k, index in enumerate(batch.indices.tolist()):
            mask = np.array(Image.open(root / lines[index]["mask"]))
            rng = sample_rng(3, 0, index)  # shuffle=False: position = index
            plan = plan_sample(pipeline, *mask.shape, rng)
            assert torch.equal(batch.masks[k], reference_mask(mask, plan, pipeline).long())
            # and the image agrees: each pixel's colour is its mask class's
            pixels = (batch.images[k] * torch.tensor(fl.IMAGENET_STD).view(3, 1, 1)
                      + torch.tensor(fl.IMAGENET_MEAN).view(3, 1, 1)) * 255
            distance = ((pixels.permute(1, 2, 0)[:, :, None, :]
                         - torch.from_numpy(PALETTE).float()) ** 2).sum(-1)
            inside = batch.masks[k] != 255  # padding: zero pixels, ignore_index in the mask
            assert (distance.argmin(-1) == batch.masks[k])[inside].float().mean() > 0.9
            assert (batch.images[k][:, ~inside] == batch.images[k][:, ~inside][:, :1]).all()
            seen += 1
    assert seen == len(lines)


@pytest.mark.parametrize("pipeline", [TRAIN, LETTERBOX], ids=["train", "letterbox"])
def test_boxes_follow_the_geometry_and_match_their_mask_regions(dataset, pipeline):
    root, lines = dataset
    for batch in batches(root, pipeline):
        assert batch.boxes.dtype == torch.float32 and batch.boxes.shape[2] == 4
        for k, index in enumerate(batch.indices.tolist()):
            count = int(batch.box_counts[k])
            assert (batch.box_labels[k, count:] == -1).all()
            mask = np.array(Image.open(root / lines[index]["mask"]))
            plan = plan_sample(pipeline, *mask.shape, sample_rng(3, 0, index))
            top, left, h, w = plan.box
            sx, sy = 64 / w, 64 / h
            expected = []
            for x0, y0, x1, y1, cls in lines[index]["boxes"]:
                ex0, ex1 = (x0 - left) * sx, (x1 - left) * sx
                if plan.flip:
                    ex0, ex1 = 64 - ex1, 64 - ex0
                box = np.clip([ex0, (y0 - top) * sy, ex1, (y1 - top) * sy], 0, 64)
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                    expected.append((*box, cls))
            got = [(*batch.boxes[k, j].tolist(), int(batch.box_labels[k, j])) for j in range(count)]
            assert np.allclose(np.array(got, float).reshape(-1, 5),
                               np.array(expected, float).reshape(-1, 5), atol=1e-4)
            # a box encloses its class's visible mask region (up to the nearest sampling)
            for (x0, y0, x1, y1, cls) in got:
                ys, xs = np.nonzero(batch.masks[k].numpy() == cls)
                if len(xs):
                    assert xs.min() >= x0 - 1.5 and xs.max() + 1 <= x1 + 1.5
                    assert ys.min() >= y0 - 1.5 and ys.max() + 1 <= y1 + 1.5


def test_multi_label_targets_are_multi_hot_and_fields_arrive_by_name(dataset):
    root, lines = dataset
    for batch in batches(root, EVAL):
        assert batch.labels.dtype == torch.float32 and batch.labels.shape[1] == 4
        for k, index in enumerate(batch.indices.tolist()):
            assert torch.nonzero(batch.labels[k]).flatten().tolist() == lines[index]["label"]
            assert batch.weight[k].item() == pytest.approx(index / 10)
            assert batch.fields["id"][k] == f"img{index:03d}"


def test_mixup_mixes_multi_hot_targets(dataset, tmp_path):
    root, lines = dataset
    # a copy of the list without masks and boxes: a multi-label classification source
    plain = tmp_path / "labels.jsonl"
    plain.write_text("".join(json.dumps({"path": str(root / l["path"]), "label": l["label"]}) + "\n"
                             for l in lines))
    pipe = fl.Pipeline(fl.Decode(), fl.Resize((32, 32)), fl.Normalize(),
                       fl.Mixup(alpha=1.0, num_classes=4, label_smoothing=0.1))
    with fl.loader(fl.ListSource(plain, num_classes=4), pipe, 8, num_workers=0) as loader:
        batch = next(iter(loader))
    hot = torch.zeros(8, 4)
    for k, index in enumerate(batch.indices.tolist()):
        hot[k, lines[index]["label"]] = 1
    smooth = hot * (1 - 0.1) + 0.1 / 4
    lam = None
    for candidate in torch.linspace(0, 1, 100001):
        mixed = candidate * smooth + (1 - candidate) * smooth.roll(-1, 0)
        if torch.allclose(mixed, batch.labels, atol=1e-5):
            lam = candidate
            break
    assert lam is not None  # the targets are one lambda's mix of each sample and its partner


def test_dali_gives_the_same_masks_boxes_and_labels(dataset):
    pytest.importorskip("nvidia.dali", reason="pip install 'fastload-images[dali]'")
    root, _ = dataset
    for pipeline in (TRAIN, EVAL, LETTERBOX):
        for a, b in zip(batches(root, pipeline, "torch"), batches(root, pipeline, "dali")):
            assert torch.equal(a.indices, b.indices) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.masks, b.masks)
            assert torch.allclose(a.boxes, b.boxes) and torch.equal(a.box_counts, b.box_counts)
            assert torch.equal(a.fields["weight"], b.fields["weight"])


def test_affine_augment_steps_move_masks_with_the_image(dataset):
    root, lines = dataset
    pipe = fl.Pipeline(fl.Decode(), fl.Resize((64, 64)),
                       fl.RandAugment(num_ops=1, magnitude=9, num_magnitude_bins=31))
    agree = []
    for batch in batches(root, pipe):
        for k in range(len(batch.labels)):
            pixels = batch.images[k].float()
            distance = ((pixels.permute(1, 2, 0)[:, :, None, :]
                         - torch.from_numpy(PALETTE).float()) ** 2).sum(-1)
            valid = batch.masks[k] != 255
            agree.append((distance.argmin(-1)[valid] == batch.masks[k][valid]).float().mean())
            for j in range(int(batch.box_counts[k])):  # each box encloses its class's region
                x0, y0, x1, y1 = batch.boxes[k, j].tolist()
                ys, xs = np.nonzero(batch.masks[k].numpy() == int(batch.box_labels[k, j]))
                if len(xs):
                    assert xs.min() >= x0 - 1.5 and xs.max() + 1 <= x1 + 1.5
                    assert ys.min() >= y0 - 1.5 and ys.max() + 1 <= y1 + 1.5
    # photometric ops change colours for some samples; geometry must still line up for most
    assert float(torch.tensor(agree).median()) > 0.9


def test_target_errors_are_named(dataset, tmp_path):
    root, lines = dataset
    bad = dict(lines[0], mask="masks/001.png")  # another image's mask: another size
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({**bad, "path": str(root / bad["path"]),
                                "mask": str(root / bad["mask"])}) + "\n")
    source = fl.ListSource(path, num_classes=4)
    with pytest.raises(fl.DecodeError, match=r"000\.jpg.*its mask is \d+x\d+ but the image is"):
        with fl.loader(source, EVAL, 1, num_workers=0) as loader:
            next(iter(loader))
    outside = dict(lines[0], path=str(root / lines[0]["path"]), mask=str(root / lines[0]["mask"]),
                   boxes=[[0, 0, 5000, 10, 1]])
    path.write_text(json.dumps(outside) + "\n")
    with pytest.raises(fl.SourceError, match=r"box 0 .* is not inside the"):
        with fl.loader(fl.ListSource(path, num_classes=4), EVAL, 1, num_workers=0) as loader:
            next(iter(loader))
    path.write_text(json.dumps({"path": "a.jpg", "label": [1, -2]}) + "\n")
    with pytest.raises(fl.SourceError, match="line 1: a label of .* is negative"):
        fl.ListSource(path, num_classes=4)
    path.write_text(json.dumps({"path": "a.jpg", "boxes": [[0, 0, 1]]}) + "\n")
    with pytest.raises(fl.SourceError, match=r"line 1: \"boxes\" must be"):
        fl.ListSource(path)


def test_torchvision_v2_gives_the_same_masks_and_boxes(dataset):
    """On fastload's own crop boxes and flips, torchvision's tv_tensors.Mask and BoundingBoxes
    transforms (resized_crop, horizontal_flip, SanitizeBoundingBoxes) give the same targets; and
    a letterbox (Resize(None, max_size) + CenterCrop) gives torchvision v2's own.
    torchvision installs beside torch 2.14.1 only: .ci/run runs this in its interop venv."""
    tv = pytest.importorskip("torchvision", reason="torchvision needs torch 2.14.1: .ci/run's "
                                                   "interop venv runs this test")
    from torchvision import tv_tensors
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    root, lines = dataset
    checked = 0
    for batch in batches(root, TRAIN):
        for k, index in enumerate(batch.indices.tolist()):
            mask = np.array(Image.open(root / lines[index]["mask"]))
            plan = plan_sample(TRAIN, *mask.shape, sample_rng(3, 0, index))
            top, left, h, w = (int(v) for v in plan.box)
            boxes = tv_tensors.BoundingBoxes(torch.tensor([b[:4] for b in lines[index]["boxes"]],
                                                          dtype=torch.float32),
                                             format="XYXY", canvas_size=mask.shape)
            target = {"masks": tv_tensors.Mask(torch.from_numpy(mask)), "boxes": boxes,
                      "labels": torch.tensor([b[4] for b in lines[index]["boxes"]])}
            out = TF.resized_crop(target["masks"], top, left, h, w, [64, 64])
            out_boxes = TF.resized_crop(target["boxes"], top, left, h, w, [64, 64])
            if plan.flip:
                out, out_boxes = TF.horizontal_flip(out), TF.horizontal_flip(out_boxes)
            sanitized = v2.SanitizeBoundingBoxes(min_size=1)(
                {"boxes": out_boxes, "labels": target["labels"]})
            assert torch.equal(batch.masks[k], out.long())
            count = int(batch.box_counts[k])
            assert torch.allclose(batch.boxes[k, :count], sanitized["boxes"].float(), atol=1e-4)
            assert batch.box_labels[k, :count].tolist() == sanitized["labels"].tolist()
            checked += 1
    assert checked == len(lines) and tv.__version__
    # the letterbox: resize(None, max_size) + center_crop (zero padding, so the mask goes
    # in shifted by one and its padding comes out 0: ignore_index here)
    def letterbox(target):
        return TF.center_crop(TF.resize(target, None, max_size=64), [64, 64])

    def letterbox_boxes(boxes):
        """v2's center_crop of BoundingBoxes anchors at round((size - 64) / 2) even where it
        pads, one pixel off its own image and mask when half the odd padding rounds away (37
        rows: the mask's rows 13..50, the box's 14..51); fastload's boxes follow the pixels,
        so they are compared with torchvision's boxes cropped where its mask was."""
        resized = TF.resize(boxes, None, max_size=64)
        (h, w), anchor = resized.canvas_size, (lambda n: -((64 - n) // 2) if 64 > n
                                              else int(round((n - 64) / 2.0)))
        return TF.crop(resized, anchor(h), anchor(w), 64, 64)

    for batch in batches(root, LETTERBOX):
        for k, index in enumerate(batch.indices.tolist()):
            mask = np.array(Image.open(root / lines[index]["mask"]))
            boxes = tv_tensors.BoundingBoxes(torch.tensor([b[:4] for b in lines[index]["boxes"]],
                                                          dtype=torch.float32),
                                             format="XYXY", canvas_size=mask.shape)
            out = v2.SanitizeBoundingBoxes(min_size=1)({
                "masks": letterbox(tv_tensors.Mask(torch.from_numpy(mask) + 1)),
                "boxes": letterbox_boxes(boxes),
                "labels": torch.tensor([b[4] for b in lines[index]["boxes"]])})
            expected = torch.where(out["masks"] == 0, 255, out["masks"].long() - 1)
            assert torch.equal(batch.masks[k], expected)
            count = int(batch.box_counts[k])
            assert torch.allclose(batch.boxes[k, :count], out["boxes"].float(), atol=1e-4)
            assert batch.box_labels[k, :count].tolist() == out["labels"].tolist()


def webdataset_shard(root, lines, path):
    """The dataset as webdataset's own ShardWriter writes it: jpg, seg.png, cls (several
    classes), and a json member with the boxes and a weight."""
    wds = pytest.importorskip("webdataset", reason="pip install 'fastload-images[test]'")
    with wds.TarWriter(str(path)) as sink:
        for i, line in enumerate(lines):
            sink.write({"__key__": f"{i:06d}", "jpg": (root / line["path"]).read_bytes(),
                        "seg.png": (root / line["mask"]).read_bytes(),
                        "cls": " ".join(map(str, line["label"])),
                        "json": {"boxes": line["boxes"], "weight": line["weight"]}})
    return path


def test_webdataset_targets_equal_the_lists(dataset, tmp_path):
    """The same samples from a WebDataset shard written by `webdataset` and from the JSONL
    list give the same batches: images, multi-hot labels, masks, boxes, fields."""
    root, lines = dataset
    shard = webdataset_shard(root, lines, tmp_path / "train-000000.tar")
    tars = fl.WebDatasetSource(shard, multi_label=True, num_classes=4, mask_key="seg.png",
                               boxes_key="json:boxes", fields={"weight": "json:weight"})
    with fl.loader(tars, TRAIN, 8, num_workers=1, seed=3) as loader:
        from_tar = list(loader)
    for a, b in zip(batches(root, TRAIN), from_tar):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.masks, b.masks) and torch.equal(a.boxes, b.boxes)
        assert torch.equal(a.box_labels, b.box_labels)
        assert torch.allclose(a.weight.double(), b.weight.double())
    again = fl.WebDatasetSource(shard, multi_label=True, num_classes=4)  # another index: re-made
    assert again.read(0)[1] == lines[0]["label"] and len(again.read(0)) == 2
    with pytest.raises(fl.SourceError, match="not below num_classes=3"):
        fl.WebDatasetSource(shard, multi_label=True, num_classes=3)
    with pytest.raises(fl.FormatError, match=r"has no 'depth.png' member"):
        fl.WebDatasetSource(shard, mask_key="depth.png", multi_label=True, num_classes=4)


def test_a_folder_pair_gives_the_lists_masks(dataset, tmp_path):
    root, lines = dataset
    source = fl.MaskFolderSource(root)  # root/images/*.jpg + root/masks/*.png
    assert len(source) == len(lines) and source.read(0)[1] == -1
    with fl.loader(source, EVAL, 8, num_workers=1, seed=3) as loader:
        for a, b in zip(batches(root, EVAL), loader):
            assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
            assert b.labels.tolist() == [-1] * len(b.labels) and b.boxes is None
    import shutil

    shutil.copytree(root / "images", tmp_path / "images")
    shutil.copytree(root / "masks", tmp_path / "masks")
    (tmp_path / "masks" / "003.png").unlink()
    with pytest.raises(fl.SourceError, match=r"003\.jpg: no mask for it in"):
        fl.MaskFolderSource(tmp_path)


def test_parquet_targets_equal_the_lists(dataset, tmp_path):
    """Parquet written by Hugging Face `datasets` (Image columns for the image and the mask, a
    list of ClassLabel for the labels, the boxes, a weight), and the datasets.Dataset itself,
    give the list's batches."""
    datasets = pytest.importorskip("datasets", reason="pip install 'fastload-images[test]'")
    root, lines = dataset
    names = ["background", "red", "green", "blue"]
    features = datasets.Features({
        "image": datasets.Image(), "mask": datasets.Image(),
        "label": datasets.Sequence(datasets.ClassLabel(names=names)),
        "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
        "weight": datasets.Value("float64")})
    table = datasets.Dataset.from_dict({
        "image": [{"bytes": (root / l["path"]).read_bytes(), "path": None} for l in lines],
        "mask": [{"bytes": (root / l["mask"]).read_bytes(), "path": None} for l in lines],
        "label": [l["label"] for l in lines], "boxes": [l["boxes"] for l in lines],
        "weight": [l["weight"] for l in lines]}, features=features)
    table.to_parquet(str(tmp_path / "train.parquet"))
    source = fl.ParquetSource(tmp_path / "train.parquet", mask_column="mask",
                              boxes_column="boxes", fields=["weight"])
    assert source.multi_label and source.num_classes == 4 and source.classes == names
    with fl.loader(source, TRAIN, 8, num_workers=1, seed=3) as loader:
        for a, b in zip(batches(root, TRAIN), loader):
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.masks, b.masks) and torch.equal(a.boxes, b.boxes)
            assert torch.equal(a.box_labels, b.box_labels)
            assert torch.equal(a.weight, b.weight)
    with pytest.raises(fl.SourceError, match="no mask column 'seg'"):
        fl.ParquetSource(tmp_path / "train.parquet", mask_column="seg")
    # the datasets.Dataset itself, read from its Arrow data, gives the same
    hf = fl.HFDatasetSource(table, mask_column="mask", boxes_column="boxes", fields=["weight"])
    assert hf.multi_label and hf.num_classes == 4 and hf.classes == names
    with fl.loader(hf, TRAIN, 8, num_workers=1, seed=3) as loader:
        for a, b in zip(batches(root, TRAIN), loader):
            assert torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks)
            assert torch.equal(a.boxes, b.boxes) and torch.equal(a.weight, b.weight)


def test_nearest_indices_are_torchs():
    """The mask resampler's index arithmetic is F.interpolate(mode="nearest")'s on a uint8
    mask, for sizes up to 4095 -> 1..300 (float32 rounding included)."""
    from fastload.backends.targets import nearest_indices

    for size in (1, 2, 3, 7, 100, 224, 255, 256, 299, 300, 333, 1000, 4095):
        for out in range(1, 301):
            index = torch.arange(size)  # as uint8, a mask's type: low and high byte
            ramp = torch.stack([index % 256, index // 256]).to(torch.uint8).view(1, 2, size, 1)
            low, high = F.interpolate(ramp, size=(out, 1), mode="nearest").long().view(2, out)
            expected = low + 256 * high
            assert nearest_indices(size, out).tolist() == expected.tolist(), (size, out)


def test_convert_writes_targets_into_tfrecord_and_webdataset_shards(dataset, tmp_path):
    """convert carries label lists, masks, boxes and fields into TFRecord features (DeepLab's
    and the Object Detection API's keys) and WebDataset members (cls "1 3", seg.png, json);
    reading either converted folder gives the list's batches (TFRecord's boxes through float32
    normalized corners: to 1e-3 px), the webdataset package reads the members, and LMDB (one
    label a Caffe Datum) refuses them before writing."""
    from fastload.tools.convert import convert

    root, lines = dataset
    source = fl.ListSource(root / "train.jsonl", num_classes=4)
    with pytest.raises(fl.SpecError, match="lmdb shards do not hold .* use --format tfrecord"):
        convert(source, tmp_path / "lmdb", format="lmdb", shards=2)
    assert not (tmp_path / "lmdb").exists() or not any((tmp_path / "lmdb").iterdir())
    expected = batches(root, TRAIN)
    for fmt, shards in (("tfrecord", 2), ("webdataset", 3)):
        manifest = convert(source, tmp_path / fmt, format=fmt, shards=shards)
        assert manifest.targets == {"multi_label": True, "num_classes": 4, "mask": True,
                                    "boxes": True, "fields": ["id", "weight"]}
        converted = fl.open_source(tmp_path / fmt)
        with fl.loader(converted, TRAIN, 8, num_workers=1, seed=3) as loader:
            got = list(loader)
        assert len(got) == len(expected)
        for a, b in zip(expected, got):
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.masks, b.masks) and torch.equal(a.box_counts, b.box_counts)
            assert torch.allclose(a.boxes, b.boxes, atol=1e-3, rtol=0), fmt
            assert torch.equal(a.box_labels, b.box_labels) and a.fields["id"] == b.fields["id"]
            assert torch.equal(a.weight, b.weight)
    with pytest.raises(fl.FormatError, match=r"record 0 .*lacks 'image/depth'"):
        fl.TFRecordSource(tmp_path / "tfrecord", mask_key="image/depth").read(0)
    with pytest.raises(fl.FormatError, match="holds no JSON object with the field 'area'"):
        fl.TFRecordSource(tmp_path / "tfrecord", fields={"area": "fastload/fields:area"}).read(0)
    wds = pytest.importorskip("webdataset", reason="pip install 'fastload-images[test]'")
    first = next(iter(wds.WebDataset(str(tmp_path / "webdataset" / "train-00000-of-00003.tar"),
                                     shardshuffle=False, empty_check=False)))
    assert first["cls"].decode().split() == [str(c) for c in lines[0]["label"]]
    assert np.array_equal(np.array(Image.open(__import__("io").BytesIO(first["seg.png"]))),
                          np.array(Image.open(root / lines[0]["mask"])))
    assert json.loads(first["json"])["boxes"] == [[float(v) for v in b[:4]] + [b[4]]
                                                 for b in lines[0]["boxes"]]


TF_TARGETS = """
import glob, json, sys, tensorflow as tf
ours, theirs, listing = sys.argv[1:4]
spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.VarLenFeature(tf.int64),
        "image/segmentation/class/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "fastload/fields": tf.io.FixedLenFeature([], tf.string),
        **{f"image/object/bbox/{c}": tf.io.VarLenFeature(tf.float32)
           for c in ("xmin", "ymin", "xmax", "ymax")}}
read = []
for ex in tf.data.TFRecordDataset(sorted(glob.glob(ours + "/*.tfrecord"))).map(
        lambda r: tf.io.parse_single_example(r, spec)):
    image = tf.io.decode_jpeg(ex["image/encoded"])
    mask = tf.io.decode_png(ex["image/segmentation/class/encoded"])
    h, w = int(image.shape[0]), int(image.shape[1])
    corners = [tf.sparse.to_dense(ex[f"image/object/bbox/{c}"]).numpy().tolist()
               for c in ("xmin", "ymin", "xmax", "ymax")]
    read.append({"label": tf.sparse.to_dense(ex["image/class/label"]).numpy().tolist(),
                 "mask_shape": [int(v) for v in mask.shape], "image_shape": [h, w],
                 "mask_sum": int(tf.reduce_sum(tf.cast(mask, tf.int64))),
                 "boxes": [[x0 * w, y0 * h, x1 * w, y1 * h, int(c)] for x0, y0, x1, y1, c in zip(
                     *corners, tf.sparse.to_dense(ex["image/object/class/label"]).numpy())],
                 "fields": json.loads(ex["fastload/fields"].numpy())})
print(json.dumps(read))
root = listing.rsplit("/", 1)[0]
with tf.io.TFRecordWriter(theirs) as out:  # the Object Detection API's layout, written by TF
    for line in map(json.loads, open(listing)):
        image = open(root + "/" + line["path"], "rb").read()
        h, w = (int(v) for v in tf.io.decode_jpeg(image).shape[:2])
        f = tf.train.Feature
        feature = {"image/encoded": f(bytes_list=tf.train.BytesList(value=[image])),
                   "image/class/label": f(int64_list=tf.train.Int64List(value=line["label"])),
                   "image/segmentation/class/encoded": f(bytes_list=tf.train.BytesList(
                       value=[open(root + "/" + line["mask"], "rb").read()])),
                   "image/object/class/label": f(int64_list=tf.train.Int64List(
                       value=[b[4] for b in line["boxes"]])),
                   "image/source_id": f(bytes_list=tf.train.BytesList(value=[line["id"].encode()])),
                   "image/weight": f(float_list=tf.train.FloatList(value=[line["weight"]]))}
        for k, (c, size) in enumerate(zip(("xmin", "ymin", "xmax", "ymax"), (w, h, w, h))):
            feature[f"image/object/bbox/{c}"] = f(float_list=tf.train.FloatList(
                value=[b[k] / size for b in line["boxes"]]))
        out.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
"""


def test_tensorflow_reads_our_targets_and_we_read_its(dataset, tmp_path):
    """tf.data parses convert's TFRecord targets (label lists, the PNG mask, normalized boxes,
    the fields' JSON) back to the list's; an Object Detection API-style shard written by
    TensorFlow gives the list's batches through TFRecordSource's keywords."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow not installed: pip install 'fastload-images[interop]'")
    from fastload.tools.convert import convert

    root, lines = dataset
    convert(fl.ListSource(root / "train.jsonl", num_classes=4), tmp_path / "ours",
            format="tfrecord", shards=1)
    theirs = tmp_path / "theirs.tfrecord"
    out = subprocess.run([sys.executable, "-c", TF_TARGETS, str(tmp_path / "ours"), str(theirs),
                          str(root / "train.jsonl")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    read = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(read) == len(lines)
    for got, line in zip(read, lines):  # one shard: the list's order
        mask = np.array(Image.open(root / line["mask"]))
        assert got["label"] == line["label"] and got["fields"] == {"id": line["id"],
                                                                   "weight": line["weight"]}
        assert got["mask_shape"] == [*mask.shape, 1] and got["mask_sum"] == int(mask.sum())
        assert np.allclose([b[:4] for b in got["boxes"]], [b[:4] for b in line["boxes"]],
                           atol=1e-3)
        assert [b[4] for b in got["boxes"]] == [b[4] for b in line["boxes"]]
    source = fl.TFRecordSource(theirs, build_missing_index=True, multi_label=True, num_classes=4,
                               mask_key="image/segmentation/class/encoded",
                               boxes_key="image/object",
                               fields={"weight": "image/weight", "id": "image/source_id"})
    with fl.loader(source, TRAIN, 8, num_workers=1, seed=3) as loader:
        for a, b in zip(batches(root, TRAIN), loader):
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.masks, b.masks) and torch.equal(a.box_labels, b.box_labels)
            assert torch.allclose(a.boxes, b.boxes, atol=1e-3, rtol=0)
            assert a.fields["id"] == b.fields["id"]
            assert torch.allclose(a.weight, b.weight.to(a.weight.dtype), atol=1e-6)
    with pytest.raises(fl.SpecError, match="dali-native.*use backend='dali'"):
        fl.loader(source, TRAIN, 8, backend="dali-native")


def png_with_filters(array, kinds):
    """An 8-bit grey PNG of ``array`` whose row y uses filter ``kinds[y % len(kinds)]``."""
    import struct
    import zlib

    height, width = array.shape
    a = array.astype(np.int64)
    raw = bytearray()
    for y in range(height):
        kind = kinds[y % len(kinds)]
        left = np.concatenate([[0], a[y, :-1]])
        up = a[y - 1] if y else np.zeros(width, np.int64)
        upleft = np.concatenate([[0], up[:-1]])
        if kind == 0:
            pred = np.zeros(width, np.int64)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = up
        elif kind == 3:
            pred = (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        raw += bytes([kind]) + ((a[y] - pred) % 256).astype(np.uint8).tobytes()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(body, zlib.crc32(kind)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


def test_the_png_row_decoder_gives_pils_pixels():
    """fastload's own mask decoder (8-bit grey and palette PNGs, inflated only down to the
    rows a crop needs) gives PIL's pixels, for every filter type; damage is named."""
    import io

    from fastload.target_info import png_rows

    rng = np.random.default_rng(5)
    array = rng.integers(0, 256, (37, 53)).astype(np.uint8)
    array[10:20] = 7  # flat runs, as masks have
    for kinds in ([0], [1], [2], [3], [4], [0, 1, 2, 3, 4]):
        data = png_with_filters(array, kinds)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), array)
        decoded, shape = png_rows(data, 37, "m")
        assert shape == (37, 53) and np.array_equal(decoded, array)
        assert np.array_equal(png_rows(data, 11, "m")[0], array[:11])
    palette = Image.fromarray(array % 8, "L").convert("P")
    out = io.BytesIO()
    palette.save(out, format="PNG")
    assert np.array_equal(png_rows(out.getvalue(), 37, "m")[0], np.asarray(Image.open(out)))
    damaged = bytearray(png_with_filters(array, [4]))
    damaged[60] ^= 0xFF  # inside IDAT
    with pytest.raises(fl.DecodeError, match="m: its mask's IDAT chunk fails its CRC"):
        png_rows(bytes(damaged), 37, "m")
    rgb = io.BytesIO()
    Image.fromarray(np.stack([array] * 3, -1)).save(rgb, format="PNG")
    assert png_rows(rgb.getvalue(), 37, "m") is None  # not a mask's PNG: PIL judges it


def test_the_c_mask_kernel_equals_the_numpy_path():
    """fastload._kernels.mask_crop_nearest (a random crop's box, nearest, flip, into uint8 or
    int64) gives transform_mask's pixels, over many boxes, flips and sizes."""
    kernels = pytest.importorskip("fastload._kernels", reason="the C extension was not built")
    from fastload.backends.targets import transform_mask

    rng = np.random.default_rng(1)
    for trial in range(300):
        height, width = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        out_h, out_w = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        pipe = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop((out_h, out_w)), fl.RandomFlip())
        mask = rng.integers(0, 256, (height, width)).astype(np.uint8)
        plan = plan_sample(pipe, height, width, sample_rng(0, trial, 0))
        expected = transform_mask(mask, plan, (height, width), pipe, 255)
        top, left, h, w = (int(v) for v in plan.box)
        for dtype in (np.uint8, np.int64):
            out = np.empty((out_h, out_w), dtype)
            kernels.mask_crop_nearest(mask, height, width, top, left, h, w, out, out_h, out_w,
                                      plan.flip, out.itemsize)
            assert np.array_equal(out, expected), (trial, dtype)


def test_a_bad_mask_is_a_counted_skip(dataset, tmp_path):
    root, lines = dataset
    entries = [dict(l, path=str(root / l["path"]), mask=str(root / l["mask"])) for l in lines[:8]]
    entries[3]["mask"] = str(root / lines[4]["mask"])  # another image's size
    path = tmp_path / "some.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    with pytest.warns(RuntimeWarning, match="its mask is"):
        with fl.loader(fl.ListSource(path, num_classes=4), EVAL, 8, num_workers=0,
                       on_error="skip") as loader:
            (batch,) = list(loader)
            assert loader.skipped_count == 1 and batch.indices.tolist()[3] == 4
            assert batch.masks.shape == (8, 64, 64)
