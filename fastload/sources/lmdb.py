"""LMDB environments of Caffe ``Datum`` values (encoded image + label), read-only, lazily opened.

A folder with ``manifest.json`` (what ``fastload convert --format lmdb`` writes) holds several
environments; sample ``i`` has key ``str(i).zfill(key_width)`` in environment ``i % S``. A bare
environment (a folder with ``data.mdb``, e.g. made by Caffe tools) is read in key order.
Environments are opened once per process (``open_env``: read-only, sizes checked first) and
never pickled. LMDB allows one open handle per environment per process, so all sources in a
process share it (``shared_env``); a forked worker drops the handles it inherited and opens its own.
Each value is checked on read (``check_datum``: a CRC32C of the image stored beside it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import FormatError, SourceError
from ..formats.caffe_lmdb import check_datum, check_size, lmdb_error, shared_env
from ..formats.manifest import MANIFEST, read_manifest
from .base import StringTable

class LMDBSource:
    def __init__(self, path: Union[str, Path]) -> None:
        root = Path(path)
        if root.name == MANIFEST:
            root = root.parent
        if not root.is_dir():
            raise SourceError(f"{root}: not a folder; expected an LMDB environment (with "
                              f"data.mdb) or a converted dataset (with {MANIFEST})")
        self.root = root
        self._keys: Optional[StringTable] = None
        if (root / MANIFEST).exists():
            self.manifest = read_manifest(root)
            if self.manifest.format != "lmdb":
                raise SourceError(f"{root}: {MANIFEST} describes {self.manifest.format!r} shards, not lmdb")
            self.envs = [os.path.realpath(root / s.file) for s in self.manifest.shards]
            self.classes = list(self.manifest.classes)
            self._count = self.manifest.samples
            for env, shard in zip(self.envs, self.manifest.shards):
                _check_env(Path(env))
                check_size(env, shard.bytes)
        else:
            _check_env(root)
            self.manifest = None
            self.envs = [os.path.realpath(root)]
            self.classes = []
            self._keys = StringTable([k.decode("utf-8", "surrogateescape") for k in self._all_keys()])
            self._count = len(self._keys)
        for env in self.envs:
            shared_env(env)  # opened (and its size checked) here, not first in a worker
        if not self._count:
            raise SourceError(f"{root}: the LMDB holds no records")

    def _all_keys(self) -> list[bytes]:
        with shared_env(self.envs[0]).begin(buffers=False) as txn:
            return [key for key in txn.cursor().iternext(keys=True, values=False)]

    def _where(self, index: int) -> tuple[int, bytes]:
        if self._keys is not None:
            return 0, self._keys[index].encode("utf-8", "surrogateescape")
        shard, _ = self.manifest.shard_of(index)  # type: ignore[union-attr]
        return shard, str(index).zfill(self.manifest.key_width).encode()  # type: ignore[union-attr]

    def __len__(self) -> int:
        return self._count

    def locate(self, index: int) -> str:
        shard, key = self._where(index)
        return f"{self.envs[shard]} key {key.decode('utf-8', 'replace')!r} (sample {index})"

    def read(self, index: int) -> tuple[bytes, int]:
        shard, key = self._where(index)
        try:
            with shared_env(self.envs[shard]).begin(buffers=False) as txn:
                value = txn.get(key)
        except lmdb_error() as exc:
            raise FormatError(f"{self.locate(index)}: LMDB read failed: {exc}") from None
        if value is None:
            raise FormatError(f"{self.locate(index)}: key missing; the environment does not "
                              f"match {MANIFEST}")
        return check_datum(value, self.locate(index))

    def shard_ids(self) -> np.ndarray:
        """Each sample's shard number (for the shard-aware order): sample i is in shard i % S."""
        return np.arange(len(self), dtype=np.int64) % len(self.envs)

    def describe(self) -> dict[str, Any]:
        return {"kind": "lmdb", "root": str(self.root), "shards": len(self.envs),
                "samples": len(self), "classes": len(self.classes)}

    def __repr__(self) -> str:
        return f"LMDBSource({str(self.root)!r}, shards={len(self.envs)}, samples={len(self)})"


def _check_env(path: Path) -> None:
    if not (path / "data.mdb").is_file():
        raise FormatError(f"{path}: not an LMDB environment (no data.mdb inside)")
