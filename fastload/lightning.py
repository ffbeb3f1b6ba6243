"""fastload in a Lightning ``Trainer``: ``FastloadDataModule``.

A fastload loader already is what Lightning asks of a dataloader: ``len``, iteration,
``sampler.set_epoch`` (Lightning calls it each epoch) and ``state_dict`` / ``load_state_dict``
(Lightning saves the train loader's state in every checkpoint, ``loops.fit_loop.state_dict.
combined_loader``, and restores it with ``fit(ckpt_path=...)``: a mid-epoch checkpoint resumes
at the very next batch). Under DDP the loader reads the rank from ``torch.distributed``, which
Lightning's strategy has set up before it asks for the loaders; Lightning never wraps a fastload
loader with a DistributedSampler (it only does that to ``torch.utils.data.DataLoader``).

``FastloadDataModule`` makes the loaders when Lightning asks for them, keeps the train loader
across epochs (its workers persist), and closes every loader at ``teardown``.
"""

from __future__ import annotations

from typing import Any, Optional

from .errors import BackendUnavailable
from .loading import Loader, loader
from .ops.spec import Pipeline

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the class below says what to install
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError:
        pl = None


_Base: Any = pl.LightningDataModule if pl is not None else object


class FastloadDataModule(_Base):  # type: ignore[misc, valid-type]
    """``FastloadDataModule(train, train_pipeline, batch_size, val=..., val_pipeline=...,
    **loader_kwargs)``: ``train`` / ``val`` are anything ``fl.loader`` reads; the train loader
    shuffles (``shuffle=True`` unless given), the validation one does not; ``loader_kwargs``
    (``num_workers``, ``seed``, ``backend``, ...) go to both."""

    def __init__(self, train: Any, train_pipeline: Pipeline, batch_size: int, *,
                 val: Any = None, val_pipeline: Optional[Pipeline] = None,
                 val_batch_size: Optional[int] = None, **loader_kwargs: Any) -> None:
        if pl is None:
            raise BackendUnavailable("fastload.lightning needs Lightning: pip install lightning")
        super().__init__()
        if val is not None and val_pipeline is None:
            raise ValueError("FastloadDataModule: val= needs val_pipeline= (e.g. "
                             "fl.presets.imagenet_eval(224))")
        self.train, self.val = train, val
        self.train_pipeline, self.val_pipeline = train_pipeline, val_pipeline
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.loader_kwargs = loader_kwargs
        self._loaders: dict[str, Loader] = {}

    def _get(self, name: str, make: Any) -> Loader:
        if name not in self._loaders:
            self._loaders[name] = make()
        return self._loaders[name]

    def train_dataloader(self) -> Loader:
        kwargs = {"shuffle": True, **self.loader_kwargs}
        return self._get("train", lambda: loader(self.train, self.train_pipeline,
                                                 self.batch_size, **kwargs))

    def val_dataloader(self) -> Any:
        if self.val is None:
            return []
        kwargs = {**self.loader_kwargs, "shuffle": False}
        return self._get("val", lambda: loader(self.val, self.val_pipeline, self.val_batch_size,
                                               **kwargs))

    def teardown(self, stage: str) -> None:
        for made in self._loaders.values():
            made.close()
        self._loaders.clear()
