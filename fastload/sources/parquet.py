"""``fl.ParquetSource``: Parquet files with a column of encoded images, read by random access.

The image column holds the image file's bytes: plain ``binary``, or Hugging Face ``datasets``'
``Image`` struct (``{bytes, path}``). The label column holds integers (or class names, numbered
as sorted); class names come from the ``huggingface`` schema metadata's ``ClassLabel`` when
it is there. Only the footers and the label column are read when the source is made.

A sample is then one page of its row group's image column chunk: the chunk's page headers are
walked once per process (``formats.parquet``: a few hundred bytes a page), and a sample reads
and decodes only the page that holds its row (HF writes its image columns uncompressed and
plain, ~1 MB pages: there, a sample is one ``pread`` of its own bytes once the page's value
places are known; any codec pyarrow decompresses is read). A page of dictionary indices reads
the chunk's dictionary too (kept per process, one at a time). Layouts this does not decode
(a repeated column, another encoding) are read as a row group's column through pyarrow (one
kept per process). Memory per worker is bounded by one page, one dictionary and one row group,
never the file.

Files are given as a file, a glob, a folder (its ``.parquet`` files, sorted), a list, or URLs
(``s3://``, ``gs://``, ``https://``: read by byte-range requests through fsspec, with retries).
``shard_ids()`` numbers the row groups, so ``shard_window=`` reads a few row groups at a time.
"""

from __future__ import annotations

import bisect
import glob
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..errors import BackendUnavailable, FormatError, SourceError
from ..formats import parquet as pages_of
from ..per_process import PerProcess
from .base import StringTable, list_at, open_read_only
from .remote import filesystem, glob_urls, is_url, leave, with_retries

PARQUET_INSTALL = "pip install 'fastload-images[parquet]'  (pyarrow)"
PAGE_TABLES = 4096  # column chunks whose page list a process keeps
PAGE_CELLS = 65536  # pages whose values' places a process keeps


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise BackendUnavailable(f"ParquetSource: {exc}; {PARQUET_INSTALL}") from None
    return pq


class ParquetSource:
    """Samples of Parquet files (see the module)."""

    def __init__(self, paths: Union[str, Path, Sequence[Union[str, Path]]], *,
                 image_column: str = "image", label_column: Optional[str] = "label",
                 classes: Optional[Sequence[str]] = None,
                 storage_options: Optional[dict[str, Any]] = None,
                 retries: int = 4, backoff_s: float = 0.2, num_classes: Optional[int] = None,
                 mask_column: Optional[str] = None, boxes_column: Optional[str] = None,
                 fields: Sequence[str] = ()) -> None:
        """Targets (``backends.targets``): a label column of lists is multi-label (its width:
        ``num_classes``, or the class names); ``mask_column`` holds each row's encoded mask
        (binary or an ``Image`` struct, read page by page as the image); ``boxes_column`` a
        list of ``[x0, y0, x1, y1, label]`` a row; ``fields`` names columns of numbers or
        strings delivered by name. ``label_column=None``: no labels (-1)."""
        pq = _pyarrow()
        self.image_column, self.label_column = image_column, label_column
        self.storage_options = dict(storage_options or {})
        self.retries, self.backoff_s = retries, backoff_s
        self.files = _files(paths, self.storage_options)
        self._fs = PerProcess(self._new_fs, leave)
        self._fds = PerProcess(self._open_fd, os.close)
        self._image = BinaryColumn(image_column, "image")
        self._mask = BinaryColumn(mask_column, "mask") if mask_column else None
        self.has_masks = self._mask is not None
        self.field_names = list(fields)
        rows: list[int] = []  # per row group (over all files): its rows
        groups: list[tuple[int, int]] = []  # (file, group in it)
        names_found, small = None, []
        small_columns = [c for c in (label_column, boxes_column, *self.field_names) if c]
        for k, name in enumerate(self.files):
            meta_file = self._parquet_file(k, pq)
            schema = meta_file.schema_arrow
            for column in (self._image, self._mask):
                if column is not None:
                    column.add_file(meta_file, k, name)
            missing = [c for c in small_columns if c not in schema.names]
            if missing:
                what = "label column" if missing[0] == label_column else "column"
                raise SourceError(f"{name}: no {what} {missing[0]!r} (its columns: "
                                  f"{schema.names}); pass "
                                  + ("label_column=" if missing[0] == label_column else
                                     "the name of an existing column"))
            meta = meta_file.metadata
            for g in range(meta.num_row_groups):
                rows.append(meta.row_group(g).num_rows)
                groups.append((k, g))
            if small_columns:
                small.append(meta_file.read(columns=small_columns))
            if label_column:
                names_found = names_found or _class_names(schema, label_column)
        for binary in (self._image, self._mask):
            if binary is not None:
                binary.finish()
        self._first = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
        self._groups = np.asarray(groups, dtype=np.int64).reshape(-1, 2)
        if self._first[-1] == 0:
            raise SourceError(f"{paths}: the Parquet files hold no rows")
        import pyarrow as pa

        table = pa.concat_tables(small) if small else None  # the label and target columns

        def column_of(name: str) -> Any:
            return table.column(name).combine_chunks()

        self.multi_label, self.num_classes = False, num_classes
        given = list(classes) if classes is not None else None
        label_values = column_of(label_column) if label_column else None
        if label_values is None:
            self.labels, self.classes = np.full(len(self), -1, np.int64), given
        elif is_list_type(label_values.type):
            self.multi_label = True
            flat, offsets, found = list_labels(label_values, label_column, self.locate)
            self._label_lists = (flat, offsets)
            self.labels = None  # several classes a sample
            self.classes = given or names_found or found
            if self.num_classes is None and self.classes:
                self.num_classes = len(self.classes)
            if self.num_classes is None:
                raise SourceError(f"{paths}: the label column {label_column!r} holds lists of "
                                  "class indices (multi-label); pass num_classes=")
            if len(flat) and int(flat.max()) >= self.num_classes:
                raise SourceError(f"{paths}: a label is {int(flat.max())}, not below "
                                  f"num_classes={self.num_classes}")
        else:
            self.labels, found = arrow_labels(label_values, label_column, self.locate, names=True)
            self.classes = given or names_found or found
            if self.classes is not None and int(self.labels.max()) >= len(self.classes):
                bad = int(np.argmax(self.labels >= len(self.classes)))
                raise SourceError(f"{self.locate(bad)}: label {int(self.labels[bad])} is not one "
                                  f"of the {len(self.classes)} classes")
        self._boxes = box_lists(column_of(boxes_column), boxes_column, self.locate) \
            if boxes_column else None
        self._fields = {name: field_values(column_of(name), name, self.locate)
                        for name in self.field_names}

    # --- files, local or remote ---------------------------------------------------------------
    def _new_fs(self, _: int = 0) -> Any:
        return filesystem(self.files[0], self.storage_options)

    def _open_fd(self, k: int) -> int:
        return open_read_only(self.files[k])

    def _parquet_file(self, k: int, pq: Any) -> Any:
        name = self.files[k]
        try:
            if is_url(name):
                handle = with_retries(name, lambda: self._fs.get(0).open(name, "rb"),
                                      self.retries, self.backoff_s)
                return pq.ParquetFile(handle)
            return pq.ParquetFile(name)
        except OSError as exc:
            raise SourceError(f"{name}: not a readable Parquet file ({exc})") from None
        except Exception as exc:  # pyarrow's ArrowInvalid for a damaged footer
            if type(exc).__module__.startswith("pyarrow"):
                raise FormatError(f"{name}: not a Parquet file, or a damaged one ({exc})") from None
            raise

    def _read(self, k: int, offset: int, size: int) -> bytes:
        name = self.files[k]
        if is_url(name):
            return with_retries(f"{name} (bytes {offset}-{offset + size - 1})",
                                lambda: self._fs.get(0).cat_file(name, start=offset,
                                                                 end=offset + size),
                                self.retries, self.backoff_s)
        return os.pread(self._fds.get(k), size, offset)

    # --- the source contract ------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._first[-1])

    def _where(self, index: int) -> tuple[int, int]:
        """(row group number over all files, row in it) of sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        group = int(np.searchsorted(self._first, index, side="right")) - 1
        return group, index - int(self._first[group])

    def locate(self, index: int) -> str:
        return self._place(index, *self._where(index))

    def _place(self, index: int, group: int, row: int) -> str:
        k, g = int(self._groups[group, 0]), int(self._groups[group, 1])
        return f"{self.files[k]} row group {g} row {row} (sample {index})"

    def read(self, index: int) -> Any:
        """(bytes, label), or (bytes, label, extras) with a mask, boxes or fields."""
        group, row = self._where(index)
        where = self._place(index, group, row)
        data = self._image.value(self, group, row, where)
        label = list_at(self._label_lists, index) if self.multi_label else int(self.labels[index])
        if self._mask is None and self._boxes is None and not self._fields:
            return data, label
        extras = bulk_extras(self._boxes, self._fields, index)
        if self._mask is not None:
            extras["mask"] = self._mask.value(self, group, row, where)
        return data, label, extras

    def shard_ids(self) -> np.ndarray:
        """Each sample's row group (numbered over all files), for the shard-aware order."""
        counts = np.diff(self._first)
        return np.repeat(np.arange(len(counts), dtype=np.int32), counts)

    def describe(self) -> dict[str, Any]:
        return {"kind": "parquet", "files": len(self.files), "row_groups": len(self._groups),
                "samples": len(self), "classes": len(self.classes) if self.classes else None}

    def __repr__(self) -> str:
        return f"ParquetSource(files={len(self.files)}, samples={len(self)})"


class BinaryColumn:
    """Random access to one column of encoded bytes (the image's, a mask's), page by page."""

    def __init__(self, name: str, what: str) -> None:
        self.name, self.what = name, what
        # (file, group, start, size) of each row group's chunk; its codec; each file's leaf
        self._adding: tuple[list, list, list] = ([], [], [])
        self._chunks = np.zeros((0, 4), np.int64)
        self._codecs = StringTable([])
        self._leaves = np.zeros((0, 3), np.int64)
        self._pages: OrderedDict[int, tuple[list[pages_of.Page], list[int]]] = OrderedDict()
        self._cells: OrderedDict[tuple[int, int], Optional[list[tuple[int, int]]]] = OrderedDict()
        self._dictionary: tuple[int, list[bytes]] = (-1, [])
        self._group: tuple[int, Any] = (-1, None)

    def add_file(self, meta_file: Any, k: int, where: str) -> None:
        """File ``k``'s row groups (in order, after those of the files before it)."""
        chunks, codecs, leaves = self._adding
        leaf = _image_leaf(meta_file, self.name, where, self.what)
        leaves.append(leaf)
        meta = meta_file.metadata
        for g in range(meta.num_row_groups):
            column = meta.row_group(g).column(leaf[0])
            start = column.dictionary_page_offset if column.has_dictionary_page else \
                column.data_page_offset
            chunks.append((k, g, int(start), int(column.total_compressed_size)))
            codecs.append(str(column.compression))

    def finish(self) -> None:
        """After the last file: the places as numpy arrays (forked workers share them)."""
        chunks, codecs, leaves = self._adding
        self._chunks = np.asarray(chunks, dtype=np.int64).reshape(-1, 4)
        self._codecs = StringTable(codecs)
        self._leaves = np.asarray(leaves, dtype=np.int64).reshape(-1, 3)
        self._adding = ([], [], [])

    def value(self, owner: ParquetSource, group: int, row: int, where: str) -> bytes:
        k = int(self._chunks[group, 0])
        leaf, max_def, max_rep = (int(x) for x in self._leaves[k])
        data: Optional[bytes] = None
        try:
            if max_rep:
                raise pages_of.Unsupported("a repeated column")
            data = self._from_page(owner, group, row, max_def, where)
        except pages_of.Unsupported:
            data = self._from_row_group(owner, group, row)
        if data is None:
            raise FormatError(f"{where}: the {self.what} cell ({self.name!r}) is null")
        return data

    def _page_table(self, owner: ParquetSource, group: int,
                    where: str) -> tuple[list[pages_of.Page], list[int]]:
        """The chunk's pages, and the first row of each (a dictionary page: of the next)."""
        found = self._pages.get(group)
        if found is None:
            k, _, start, size = (int(x) for x in self._chunks[group])
            listed = pages_of.pages(lambda o, n: owner._read(k, o, n), start, size, where)
            firsts, first = [], 0
            for page in listed:
                firsts.append(first)
                first += page.values if page.kind != pages_of.DICTIONARY_PAGE else 0
            found = self._pages[group] = (listed, firsts)
            if len(self._pages) > PAGE_TABLES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(group)
        return found

    def _from_page(self, owner: ParquetSource, group: int, row: int, max_def: int,
                   where: str) -> Optional[bytes]:
        k = int(self._chunks[group, 0])
        codec = self._codecs[group]
        listed, firsts = self._page_table(owner, group, where)
        number = bisect.bisect_right(firsts, row) - 1  # the last page starting at or before row
        page = listed[number] if number >= 0 else None
        if page is None or page.kind == pages_of.DICTIONARY_PAGE or \
                row >= firsts[number] + page.values:
            rows = firsts[-1] + listed[-1].values if listed else 0
            raise FormatError(f"{where}: the row group's {self.what} pages hold {rows} rows, "
                              "fewer than its footer says: the file is damaged")
        first = firsts[number]
        cells = self._cells_of(owner, group, number, page, max_def, codec, where)
        if cells is not None:
            at, size = cells[row - first]
            data = owner._read(k, at, size) if at >= 0 else None
            if data is not None and len(data) != size:
                raise FormatError(f"{where}: got {len(data)} of its {size} bytes: the "
                                  "file is truncated")
            return data
        body = owner._read(k, page.body, page.size)
        if len(body) != page.size:
            raise FormatError(f"{where}: got {len(body)} of a page's {page.size} bytes: "
                              "the file is truncated")
        return pages_of.value(page, body, row - first, max_def, codec,
                              lambda: self._dictionary_of(owner, group, listed, where), where)

    def _cells_of(self, owner: ParquetSource, group: int, number: int, page: pages_of.Page,
                  max_def: int, codec: str, where: str) -> Optional[list[tuple[int, int]]]:
        """Where each row's value lies, for an uncompressed PLAIN page (local files only: a
        remote file pays a request a value to find them, more than the page costs)."""
        k = int(self._chunks[group, 0])
        if is_url(owner.files[k]):
            return None
        key = (group, number)
        if key not in self._cells:
            self._cells[key] = pages_of.plain_cells(lambda o, n: owner._read(k, o, n), page,
                                                    max_def, codec, where)
            if len(self._cells) > PAGE_CELLS:
                self._cells.popitem(last=False)
        return self._cells[key]

    def _dictionary_of(self, owner: ParquetSource, group: int, listed: list[pages_of.Page],
                       where: str) -> list[bytes]:
        if self._dictionary[0] != group:
            page = next((p for p in listed if p.kind == pages_of.DICTIONARY_PAGE), None)
            if page is None:
                raise FormatError(f"{where}: a dictionary-encoded page without a dictionary page")
            k = int(self._chunks[group, 0])
            body = owner._read(k, page.body, page.size)
            self._dictionary = (group, pages_of.dictionary_values(
                page, body, self._codecs[group], where))
        return self._dictionary[1]

    def _from_row_group(self, owner: ParquetSource, group: int, row: int) -> Optional[bytes]:
        if self._group[0] != group:
            k, g = int(self._chunks[group, 0]), int(self._chunks[group, 1])
            table = owner._parquet_file(k, _pyarrow()).read_row_group(g, columns=[self.name])
            column = table.column(0).combine_chunks()
            import pyarrow as pa

            if pa.types.is_struct(column.type):
                column = column.field("bytes")
            self._group = (group, column)
        return self._group[1][row].as_py()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pages"], state["_cells"] = OrderedDict(), OrderedDict()
        state["_dictionary"], state["_group"] = (-1, []), (-1, None)
        return state


def arrow_labels(column: Any, name: str, where: Callable[[int], str], *, names: bool
                 ) -> tuple[np.ndarray, Optional[list[str]]]:
    """Every row's label (int64) from an Arrow column, and the class names when the column
    holds names (numbered as sorted; only with ``names=True``). A null, a negative or a
    non-integer label is a FormatError naming its row (``where(row)``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if column.null_count:
        bad = int(np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))[0])
        raise FormatError(f"{where(bad)}: the label is null; every row needs a label")
    if pa.types.is_integer(kind):
        labels = column.to_numpy().astype(np.int64)
        if len(labels) and labels.min() < 0:
            bad = int(np.argmax(labels < 0))
            raise FormatError(f"{where(bad)}: label {int(labels[bad])} is not a class index (an "
                              "integer >= 0)")
        return labels, None
    if names and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        given = column.to_pylist()
        classes = sorted(set(given))
        number = {c: i for i, c in enumerate(classes)}
        return np.asarray([number[n] for n in given], dtype=np.int64), classes
    raise FormatError(f"{where(0)}: the label column {name!r} holds {kind}; it must hold "
                      "integer class indices"
                      + (" or class names" if names else " (a ClassLabel feature, or ints); "
                         "encode names with dataset.class_encode_column(...)")
                      + f" (this row's: {column[0].as_py()!r})")


def is_list_type(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def list_labels(column: Any, name: str, where: Callable[[int], str]
                ) -> tuple[np.ndarray, np.ndarray, Optional[list[str]]]:
    """A column of label lists (multi-label) as (flat int64 class indices, offsets, class
    names when the lists hold names, numbered as sorted)."""
    import pyarrow.compute as pc

    if column.null_count:
        bad = int(np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))[0])
        raise FormatError(f"{where(bad)}: the label list is null; give an empty list for none")
    offsets = np.asarray(column.offsets.to_numpy(), np.int64) - int(column.offsets[0].as_py())
    values = column.flatten()
    flat, names = arrow_labels(values, name, lambda i: where(int(np.searchsorted(
        offsets, i, side="right")) - 1), names=True)
    return flat, offsets, names


def box_lists(column: Any, name: str, where: Callable[[int], str]) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """A column of ``[[x0, y0, x1, y1, label], ...]`` a row as ((M, 5) float64, offsets)."""
    rows = column.to_pylist()
    values, offsets = [], [0]
    for i, boxes in enumerate(rows):
        try:
            array = np.asarray(boxes if boxes is not None else [], np.float64).reshape(-1, 5)
        except (TypeError, ValueError):
            raise FormatError(f"{where(i)}: {name!r} holds {boxes!r:.80}, not [[x0, y0, x1, y1, "
                              "label], ...]") from None
        values.append(array)
        offsets.append(offsets[-1] + len(array))
    return np.concatenate(values) if values else np.zeros((0, 5)), np.asarray(offsets, np.int64)


def bulk_extras(boxes: Optional[tuple[np.ndarray, np.ndarray]], fields: dict[str, Any],
                index: int) -> dict[str, Any]:
    """Row ``index``'s boxes (from ``box_lists``) and fields (from ``field_values``), read in
    bulk when the source was made, as a sample's extras."""
    extras: dict[str, Any] = {}
    if boxes is not None:
        values, offsets = boxes
        rows = values[offsets[index]:offsets[index + 1]]
        extras["boxes"], extras["box_labels"] = rows[:, :4].astype(np.float32), \
            rows[:, 4].astype(np.int64)
    for name, column in fields.items():
        extras[name] = column[index]
    return extras


def field_values(column: Any, name: str, where: Callable[[int], str]) -> Any:
    """A per-sample field column: numbers as a numpy array, strings as a StringTable."""
    import pyarrow as pa

    kind = column.type
    if column.null_count:
        import pyarrow.compute as pc

        bad = int(np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))[0])
        raise FormatError(f"{where(bad)}: field {name!r} is null")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return column.to_numpy(zero_copy_only=False)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return StringTable(column.to_pylist())
    raise FormatError(f"{where(0)}: field {name!r} holds {kind}; a field column holds numbers "
                      "or strings")


def _image_leaf(meta_file: Any, column: str, where: str,
                what: str = "image") -> tuple[int, int, int]:
    """(leaf column number, max definition level, max repetition level) of the image (or
    mask) bytes: the column itself when binary, its ``bytes`` child when HF's Image struct."""
    import pyarrow as pa

    schema = meta_file.schema_arrow
    if column not in schema.names:
        raise SourceError(f"{where}: no {what} column {column!r} (its columns: {schema.names}); "
                          f"pass {what}_column=")
    kind = schema.field(column).type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        path = f"{column}.bytes"
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        path = column
    else:
        raise SourceError(f"{where}: column {column!r} holds {kind}; the {what} column must hold "
                          "encoded image bytes (binary, or a struct with a 'bytes' field as "
                          "Hugging Face's Image feature writes)")
    parquet_schema = meta_file.schema
    for i in range(len(parquet_schema)):
        leaf = parquet_schema.column(i)
        if leaf.path == path:
            return i, leaf.max_definition_level, leaf.max_repetition_level
    raise SourceError(f"{where}: no Parquet leaf column {path!r}")


def _class_names(schema: Any, label_column: str) -> Optional[list[str]]:
    """Class names of a Hugging Face ``ClassLabel`` label column, from the schema metadata."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        feature = json.loads(raw)["info"]["features"][label_column]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(feature, dict) and feature.get("_type") in ("Sequence", "List", "LargeList"):
        feature = feature.get("feature")  # a multi-label column: a list of ClassLabel
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and \
            isinstance(feature.get("names"), list):
        return [str(n) for n in feature["names"]]
    return None


def _files(paths: Any, storage_options: dict[str, Any]) -> list[str]:
    if isinstance(paths, (list, tuple)):
        names = [str(p) for p in paths]
        if not names:
            raise SourceError("ParquetSource: the list of files is empty")
        return names
    text = str(paths)
    if is_url(text):
        if any(c in text for c in "*?[") or text.endswith("/"):
            names = glob_urls(filesystem(text, storage_options),
                              text if not text.endswith("/") else text + "*.parquet")
            if not names:
                raise SourceError(f"{text}: matches no Parquet files")
            return names
        return [text]
    path = Path(text)
    if path.is_dir():
        names = sorted(str(p) for p in path.rglob("*.parquet") if p.is_file())
        if not names:
            raise SourceError(f"{path}: no .parquet files in this folder")
        return names
    if any(c in text for c in "*?["):
        names = sorted(glob.glob(text, recursive=True))
        if not names:
            raise SourceError(f"{text}: the glob matches no files")
        return names
    if not path.is_file():
        raise SourceError(f"{path}: no such Parquet file")
    return [text]
