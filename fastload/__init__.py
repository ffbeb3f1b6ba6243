"""fastload: one image pipeline spec, compiled to a persistent-worker PyTorch DataLoader or to
NVIDIA DALI, fed by DDP-aware, resumable sharding.

``import fastload`` imports neither torch nor DALI; ``fastload.loader`` imports torch.
"""

from __future__ import annotations

from . import presets
from .dist import DistInfo
from .errors import (BackendUnavailable, DecodeError, FastloadError, FormatError, SourceError,
                     SpecError)
from .loading import Loader, loader
from .ops import (IMAGENET_MEAN, IMAGENET_STD, CenterCrop, Decode, Normalize, RandomErasing,
                  RandomFlip, RandomResizedCrop, Resize)
from .sources import FolderSource, Source, open_source
from .spec import Pipeline

__version__ = "0.1.0"


__all__ = [
    "BackendUnavailable", "CenterCrop", "Decode", "DecodeError", "DistInfo", "FastloadError",
    "FolderSource", "FormatError", "IMAGENET_MEAN", "IMAGENET_STD", "Loader", "Normalize", "Pipeline",
    "RandomErasing", "RandomFlip", "RandomResizedCrop", "Resize", "Source", "SourceError",
    "SpecError", "loader", "open_source", "presets",
]
