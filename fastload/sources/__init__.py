"""Sources give encoded bytes + label by sample index: folder, TFRecord, LMDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from ..errors import SourceError
from .base import Source, StringTable
from .folder import FolderSource

__all__ = ["FolderSource", "Source", "StringTable", "open_source"]


def open_source(source: Union[str, Path, Any]) -> Source:
    """A Source object as is, or a path: ``folder:PATH`` or a folder in ImageFolder layout."""
    if isinstance(source, Source) and not isinstance(source, (str, Path)):
        return source
    if not isinstance(source, (str, Path)):
        raise SourceError(f"source={source!r} must be a path or a Source "
                          "(len, read(i) -> (bytes, label), describe(), locate(i))")
    text = str(source)
    kind, _, rest = text.partition(":")
    if kind == "folder" and rest:
        return FolderSource(rest)
    path = Path(text)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    return FolderSource(path)
