"""ImageFolder layout: ``root/<class>/<image>``; classes sorted by name, files sorted."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import SourceError
from .base import StringTable, read_arrays

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


INDEX_FILE = ".fastload-index.npz"
INDEX_VERSION = 2  # 2: folder ctimes kept, arrays checked against the file
_RACY_SECONDS = 2.0  # a folder changed this recently may change again within its mtime tick


class FolderSource:
    """Images under ``root/<class>/...`` (sub-folders included), labelled by sorted class name.

    Listing a large tree costs seconds (~1.28M files: one ``scandir`` per folder, a sort, a
    string per file), so the listing is kept in an index file, ``index_file`` (default
    ``root/.fastload-index.npz``; another path for a read-only dataset; None: never), plain
    numpy arrays (no pickle). It is used while the class folders are the same and every folder
    under them still has the modification and status-change times it had when listed: adding,
    removing or renaming a file or folder changes its parent folder's, and setting a folder's
    modification time back (``touch -r``, unpacking a tarball) changes its status-change time;
    the tree is then listed again (and the file rewritten). A listing in which some folder
    changed less than 2 s before is not saved (it could still change within the same
    timestamp tick). An index file whose arrays do not match the file or each other is
    ignored and rewritten. Writing the default file is skipped silently where the folder is
    not writable; an index file given explicitly that cannot be written is an error.

    Folder links are followed, each real folder once: a link to a folder already listed is
    skipped (with a warning naming it), and a link to a folder that contains it (a loop) is
    an error naming the link.
    """

    def __init__(self, root: Union[str, Path], *, extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
                 allow_empty_classes: bool = False,
                 index_file: Union[str, Path, None] = INDEX_FILE,
                 classes: Optional[Sequence[str]] = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: not a folder; expected root/<class>/<image> files")
        exts = tuple(e.lower() for e in extensions)
        explicit = index_file is not None and index_file != INDEX_FILE
        index = None if index_file is None else Path(index_file) if explicit else self.root / INDEX_FILE
        listing = _load_index(self.root, index, exts) if index is not None else None
        if listing is None:
            listing = _list(self.root, exts)
            if index is not None and listing.stable:
                _save_index(index, exts, listing, explicit)
        if classes is not None:
            listing = _keep(self.root, listing, classes)
        self.classes = listing.classes
        counts = np.bincount(listing.labels, minlength=len(self.classes))
        empty = [name for name, n in zip(self.classes, counts) if n == 0]
        if len(listing.labels) == 0:
            raise SourceError(f"{self.root}: no image files ({', '.join(exts)}) in any class folder")
        if empty and not allow_empty_classes:
            raise SourceError(f"{self.root}: class folder(s) with no image files: {empty[:10]}"
                              f"{' ...' if len(empty) > 10 else ''}; remove them or pass "
                              "allow_empty_classes=True to keep their labels")
        self.empty_classes = empty
        self._paths = listing.paths
        self.labels = listing.labels

    def __len__(self) -> int:
        return len(self._paths)

    def relative_path(self, index: int) -> str:
        """``<class>/<file>`` of sample ``index``, relative to the root."""
        return self._paths[index]

    def path(self, index: int) -> Path:
        return Path(self._file(index))

    def _file(self, index: int) -> str:
        # a string join, not pathlib: no Path objects per sample on the hot path
        return os.path.join(self.root, self.relative_path(index))

    def locate(self, index: int) -> str:
        return f"{self._file(index)} (sample {index})"

    def read(self, index: int) -> tuple[bytes, int]:
        path = self._file(index)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise SourceError(f"{path} (sample {index}): cannot read: {exc.strerror or exc}; "
                              "was the dataset changed while the loader ran?") from None
        return data, int(self.labels[index])

    def describe(self) -> dict[str, Any]:
        return {"kind": "folder", "root": str(self.root), "samples": len(self),
                "classes": len(self.classes)}

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r}, samples={len(self)}, classes={len(self.classes)})"


class _Listing:
    """What listing the tree found: class names, paths (``<class>/<file>``) and labels, and
    every folder walked with its modification and status-change times (ns), for checking an
    index file."""

    def __init__(self, classes: list[str], paths: StringTable, labels: np.ndarray,
                 folders: StringTable, times: np.ndarray, stable: bool = True) -> None:
        self.classes, self.paths, self.labels = classes, paths, labels
        self.folders, self.times, self.stable = folders, times, stable


def _keep(root: Path, listing: _Listing, classes: Sequence[str]) -> _Listing:
    """The listing of only ``classes`` (numbered in sorted order, as ImageFolder would)."""
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
        raise SourceError(f"{root}: classes={classes!r:.80} must be a list of class folder names")
    missing = sorted(set(classes) - set(listing.classes))
    if missing:
        raise SourceError(f"{root}: no class folder(s) {missing[:10]}; the classes are "
                          f"{listing.classes[:20]}{' ...' if len(listing.classes) > 20 else ''}")
    kept = sorted(set(classes))
    new_label = np.full(len(listing.classes), -1, dtype=np.int64)
    for i, name in enumerate(kept):
        new_label[listing.classes.index(name)] = i
    mapped = new_label[listing.labels]
    rows = np.flatnonzero(mapped >= 0)
    return _Listing(kept, StringTable([listing.paths[int(i)] for i in rows]), mapped[rows],
                    listing.folders, listing.times, listing.stable)


def _class_names(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir())


def _times(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_ctime_ns


def _list(root: Path, exts: tuple[str, ...]) -> _Listing:
    started = time.time_ns()
    folders: list[str] = []
    times: list[tuple[int, int]] = []
    classes = _class_names(root)
    if not classes:
        raise SourceError(f"{root}: no class folders; expected root/<class>/<image> files")
    paths: list[str] = []
    labels: list[int] = []
    walk = _Walk(root)
    for label, name in enumerate(classes):
        found = walk.scan(name, exts, folders, times)
        paths.extend(found)
        labels.extend([label] * len(found))
    if walk.skipped:
        warnings.warn(f"{root}: {len(walk.skipped)} folder link(s) lead to a folder already "
                      f"listed and were not followed again: {walk.skipped[:5]}"
                      f"{' ...' if len(walk.skipped) > 5 else ''}", stacklevel=3)
    stable = max(max(t) for t in times) < started - _RACY_SECONDS * 1e9
    # (the root's own times are not kept: writing the index file into it changes them; its
    # class folders are compared by name instead)
    return _Listing(classes, StringTable(paths), np.asarray(labels, dtype=np.int64),
                    StringTable(folders), np.asarray(times, dtype=np.int64).reshape(-1, 2),
                    stable)


class _Walk:
    """The walk of one tree: each real folder (device, inode) is listed once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        st = os.stat(root)
        self.seen: dict[tuple[int, int], str] = {(st.st_dev, st.st_ino): "."}
        self.skipped: list[str] = []

    def scan(self, name: str, exts: tuple[str, ...], folders: list[str],
             times: list[tuple[int, int]]) -> list[str]:
        """Image files under ``root/name`` (folder links followed, each real folder once), as
        sorted ``name/...`` paths; every folder walked is appended to ``folders`` with its
        times."""
        found = []
        top = os.stat(self.root / name)
        self.seen.setdefault((top.st_dev, top.st_ino), name)
        for dirpath, dirnames, filenames in os.walk(self.root / name, followlinks=True):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root)
            folders.append(rel)
            times.append(_times(dirpath))
            dirnames[:] = [d for d in dirnames if self._enter(dirpath, rel, d)]
            for f in filenames:
                if f.lower().endswith(exts):
                    found.append(os.path.join(rel, f))
        return sorted(found)

    def _enter(self, dirpath: str, rel: str, name: str) -> bool:
        full = os.path.join(dirpath, name)
        st = os.stat(full)
        key = (st.st_dev, st.st_ino)
        first = self.seen.get(key)
        if first is None:
            self.seen[key] = os.path.join(rel, name)
            return True
        if first == "." or rel == first or rel.startswith(first + os.sep):
            where = os.path.realpath(full)
            raise SourceError(f"{full} -> {where}: this folder link leads back to a folder that "
                              f"contains it ({first}), a loop that would list its images over "
                              "and over; remove the link or point it elsewhere")
        self.skipped.append(os.path.join(rel, name))
        return False


def _load_index(root: Path, path: Path, exts: tuple[str, ...]) -> Optional[_Listing]:
    """The listing of ``root`` saved at ``path`` if it is there, readable, consistent, of these
    extensions and still current (the same class folders, every folder's modification and
    status-change times unchanged); else None."""
    try:
        f = read_arrays(path)
        if int(f["version"]) != INDEX_VERSION or str(f["extensions"]) != "|".join(exts):
            return None
        folders = StringTable.from_arrays(f["folders_blob"], f["folders_offsets"])
        classes = StringTable.from_arrays(f["classes_blob"], f["classes_offsets"])
        paths = StringTable.from_arrays(f["paths_blob"], f["paths_offsets"])
        labels, times = f["labels"], f["times"]
        if (labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(paths)
                or times.shape != (len(folders), 2) or times.dtype != np.int64
                or (len(labels) and (labels.min() < 0 or labels.max() >= len(classes)))
                or any(t.arrays()[1][0] != 0 or np.any(np.diff(t.arrays()[1]) < 0)
                       for t in (folders, classes, paths))):
            return None
        listing = _Listing([classes[i] for i in range(len(classes))], paths,
                           labels.astype(np.int64), folders, times)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, MemoryError):
        return None
    try:
        if _class_names(root) != listing.classes:
            return None
        for i in range(len(folders)):
            if _times(os.path.join(root, folders[i])) != tuple(times[i]):
                return None
    except OSError:
        return None
    return listing


def _save_index(path: Path, exts: tuple[str, ...], listing: _Listing, explicit: bool) -> None:
    """Write the listing to ``path`` (a temporary name, then a rename)."""
    arrays = {"version": np.asarray(INDEX_VERSION), "extensions": np.asarray("|".join(exts)),
              "labels": listing.labels, "times": listing.times}
    for name, table in (("paths", listing.paths), ("folders", listing.folders),
                        ("classes", StringTable(listing.classes))):
        arrays[f"{name}_blob"], arrays[f"{name}_offsets"] = table.arrays()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if explicit:
            raise SourceError(f"{path}: cannot write the folder's index file: "
                              f"{exc.strerror or exc}; pass index_file=None to list the folder "
                              "every time, or a writable path") from None
