"""fastload: one image pipeline spec, compiled to a persistent-worker PyTorch DataLoader or to
NVIDIA DALI, fed by DDP-aware, resumable sharding.

``import fastload`` imports neither torch nor DALI; ``fastload.loader`` imports torch.
"""

from __future__ import annotations

from . import presets
from .dist import DistInfo
from . import mixing
from .errors import (BackendUnavailable, DecodeError, FastloadError, FormatError, LoaderTimeout,
                     OpNotSupported, SourceError, SpecError, TransformError)
from .evaluation import ExactMean
from .loading import Loader, loader
from .mixing import CutMix, Mixup, MixupOrCutMix
from .ops import (IMAGENET_MEAN, IMAGENET_STD, CenterCrop, Decode, Normalize, RandomErasing,
                  RandomFlip, RandomResizedCrop, Resize)
from .sources import DatasetSource, FolderSource, RemoteTFRecordSource, Source, open_source
from .autoaugment import RandAugment, TrivialAugmentWide
from .photometric import ColorJitter, GaussianBlur, RandomGrayscale, RandomSolarize, ThreeAugment
from .schedule import by_epoch
from .spec import Pipeline
from .user_ops import BatchLambda, Lambda

__version__ = "0.2.0"
#: The name this project installs under (``pip install fastload-images``); ``fastload`` on the
#: public index is an unrelated downloader that also imports as ``fastload``.
DISTRIBUTION = "fastload-images"


__all__ = [
    "BackendUnavailable", "BatchLambda", "CenterCrop", "ColorJitter", "CutMix", "DatasetSource",
    "GaussianBlur", "RandAugment", "RandomGrayscale", "RandomSolarize", "ThreeAugment",
    "TrivialAugmentWide", "Decode", "DecodeError", "DistInfo",
    "ExactMean", "FastloadError", "FolderSource", "FormatError", "Lambda", "LoaderTimeout",
    "Mixup", "MixupOrCutMix", "OpNotSupported", "IMAGENET_MEAN", "IMAGENET_STD", "Loader", "Normalize", "Pipeline",
    "RandomErasing", "RandomFlip", "RandomResizedCrop", "RemoteTFRecordSource", "Resize",
    "Source", "SourceError",
    "SpecError", "TransformError", "by_epoch", "loader", "mixing", "open_source", "presets",
]
