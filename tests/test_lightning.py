"""fastload under a real Lightning Trainer (CPU): fit + validate over 2 epochs, a checkpoint in
the middle of an epoch, and a resume that continues at the very next batch."""

import pytest
import torch

import fastload as fl

L = pytest.importorskip("lightning.pytorch", reason="pip install 'fastload-images[test]'")
from fastload.lightning import FastloadDataModule  # noqa: E402

PIPE = fl.Pipeline(fl.Decode(), fl.Resize((16, 16)), fl.Normalize())


class Model(L.LightningModule):
    def __init__(self, seen):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
        self.seen, self.validated = seen, 0

    def training_step(self, batch, index):
        images, labels = batch
        self.seen.append((self.current_epoch, index, batch.indices.tolist()))
        return torch.nn.functional.cross_entropy(self.net(images), labels)

    def validation_step(self, batch, index):
        images, labels = batch
        self.validated += len(labels)
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(images), labels))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(folder, tmp_path, ckpt_path=None):
    seen = []
    model = Model(seen)
    data = FastloadDataModule(folder, PIPE, 8, val=folder, val_pipeline=PIPE, num_workers=1,
                              seed=5)
    checkpoints = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=3,
                                              save_top_k=-1)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, callbacks=[checkpoints],
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return seen, model


def test_fit_validate_checkpoint_mid_epoch_and_resume(jpeg_folder, tmp_path):
    seen, model = fit(jpeg_folder, tmp_path)
    per_epoch = -(-37 // 8)
    assert [(e, i) for e, i, _ in seen] == [(e, i) for e in range(2) for i in range(per_epoch)]
    assert sorted(j for e, _, ids in seen if e == 0 for j in ids) == list(range(37))
    assert model.validated == 2 * 37  # validation after each epoch, every sample once
    state = torch.load(tmp_path / "ck" / "epoch=0-step=3.ckpt", weights_only=False)
    saved = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert saved[0]["position"] == 3 * 8 and saved[0]["epoch"] == 0  # the loader's own state
    resumed, _ = fit(jpeg_folder, tmp_path / "again", tmp_path / "ck" / "epoch=0-step=3.ckpt")
    assert resumed == seen[3:]  # the very next batch, then everything after it
