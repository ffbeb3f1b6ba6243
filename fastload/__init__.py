"""fastload: one image pipeline spec, compiled to a persistent-worker PyTorch DataLoader or to
NVIDIA DALI, fed by DDP-aware, resumable sharding.

``import fastload`` imports neither torch nor DALI; ``fastload.loader`` imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (BackendUnavailable, DecodeError, FastloadError, FormatError, LoaderTimeout,
                     OpNotSupported, SourceError, SourceUnavailable, SpecError, TransformError)
from .batch import Batch
from .loading import Loader, loader
from .ops import mixing, presets
from .ops.autoaugment import RandAugment, TrivialAugmentWide
from .ops.basic import (IMAGENET_MEAN, IMAGENET_STD, CenterCrop, Decode, Normalize, RandomErasing,
                        RandomFlip, RandomResizedCrop, Resize)
from .ops.mixing import CutMix, Mixup, MixupOrCutMix
from .ops.photometric import (ColorJitter, GaussianBlur, RandomGrayscale, RandomSolarize,
                              ThreeAugment)
from .ops.interop import from_timm, from_torchvision
from .ops.schedule import by_epoch
from .ops.spec import Pipeline
from .ops.user_ops import BatchLambda, Lambda
from .order.dist import DistInfo
from .order.evaluation import ExactMean
from .order.sampling import ClassBalanced, Weighted
from .sources import (DatasetSource, FolderSource, HFDatasetSource, ListSource, LMDBSource,
                      MaskFolderSource, ParquetSource, RemoteTFRecordSource, Source,
                      TFRecordSource, WebDatasetSource, open_source)
from .sources.mix import Mix
from .sources.subset import Subset, split, subset

__version__ = "0.2.0"
#: The name this project installs under (``pip install fastload-images``); ``fastload`` on the
#: public index is an unrelated downloader that also imports as ``fastload``.
DISTRIBUTION = "fastload-images"


__all__ = [
    "BackendUnavailable", "Batch", "BatchLambda", "CenterCrop", "ClassBalanced", "ColorJitter", "CutMix",
    "DatasetSource", "HFDatasetSource", "ListSource", "LMDBSource", "MaskFolderSource", "Mix",
    "ParquetSource", "Subset", "TFRecordSource", "WebDatasetSource", "Weighted", "split",
    "subset",
    "GaussianBlur", "RandAugment", "RandomGrayscale", "RandomSolarize", "ThreeAugment",
    "TrivialAugmentWide", "Decode", "DecodeError", "DistInfo",
    "ExactMean", "FastloadError", "FolderSource", "FormatError", "Lambda", "LoaderTimeout",
    "Mixup", "MixupOrCutMix", "OpNotSupported", "IMAGENET_MEAN", "IMAGENET_STD", "Loader", "Normalize", "Pipeline",
    "RandomErasing", "RandomFlip", "RandomResizedCrop", "RemoteTFRecordSource", "Resize",
    "Source", "SourceError", "SourceUnavailable",
    "SpecError", "TransformError", "by_epoch", "from_timm", "from_torchvision", "loader", "mixing", "open_source", "presets",
]


def __getattr__(name: str) -> Any:
    """``fastload.convert`` and ``fastload.verify``, the documented Python face of the CLI's
    commands (``fastload.convert.convert(src, dst, ...)``), are imported on first use: they
    live in ``fastload.tools`` and ``import fastload`` stays light."""
    if name in ("convert", "verify"):
        return importlib.import_module(f".tools.{name}", __name__)
    raise AttributeError(f"module 'fastload' has no attribute {name!r}")
