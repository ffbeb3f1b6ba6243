"""One rank of a real multi-process run (gloo on CPU), launched by test_ddp.py with spawn.

Each rank trains a tiny DDP model through fastload.loader and writes what it saw to
``out/rank<r>.json``: per epoch the batches' sample indices and padding marks, ``len(loader)``,
and the sum over ranks of the batch counts (an all_reduce that only completes if no rank hangs).
"""

import gc
import json
import socket
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

import fastload as fl


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_loader(cfg):
    pipeline = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(8), fl.Normalize())
    data = cfg["data"]
    if cfg.get("storage_options"):  # shards in a bucket (test_remote.py)
        data = fl.RemoteTFRecordSource(data, storage_options=cfg["storage_options"])
    sampling = None
    if cfg.get("weighted"):  # test_sampling_ddp.py: weighted draws, or a mixture
        sampling = fl.Weighted(**cfg["weighted"])
    if cfg.get("mix"):
        data = fl.Mix([tuple(part) for part in cfg["mix"]["parts"]],
                      epoch_size=cfg["mix"]["epoch_size"])
    loader = fl.loader(data, pipeline, cfg["batch"], num_workers=cfg.get("workers", 0),
                       seed=cfg.get("seed", 0), last_batch=cfg.get("last_batch", "pad"),
                       shuffle=cfg.get("shuffle", True), sampling=sampling,
                       device="cpu", dist=cfg.get("dist"))
    if cfg.get("state"):
        loader.load_state_dict(cfg["state"])
    return loader


def evaluate(rank, cfg):
    """An evaluation loop as a DataLoader user writes it, constructor line swapped: no
    last_batch, no shuffle; fl.ExactMean counts each sample once across the ranks."""
    loader = fl.loader(cfg["data"], fl.presets.imagenet_eval(8), batch_size=cfg["batch"],
                       num_workers=1, pin_memory=True, drop_last=False, device="cpu")
    accuracy = fl.ExactMean()
    seen = []
    with torch.no_grad():
        for batch in loader:
            images, labels = batch
            predicted = torch.where(batch.indices % 2 == 0, labels, labels + 1)  # even: right
            accuracy.update(predicted == labels, batch)
            seen.append({"indices": batch.indices.tolist(), "padded": batch.padded.tolist()})
    record = {"rank": rank, "epochs": [{"batches": seen, "len": len(loader)}],
              "accuracy": accuracy.compute()}
    loader.close()
    return record


def run(rank, world, cfg):
    torch.manual_seed(0)
    init = dict(backend="gloo", init_method=f"tcp://127.0.0.1:{cfg['port']}", rank=rank,
                world_size=world, timeout=timedelta(seconds=60))
    if cfg.get("eval"):
        dist.init_process_group(**init)
        Path(cfg["out"], f"rank{rank}.json").write_text(json.dumps(evaluate(rank, cfg)))
        dist.barrier()
        dist.destroy_process_group()
        return
    if cfg.get("loader_before_init"):
        loader = make_loader(cfg)
        dist.init_process_group(**init)
    else:
        dist.init_process_group(**init)
        loader = make_loader(cfg)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 3)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    record = {"rank": rank, "world": world, "epochs": []}
    for epoch in cfg.get("epochs", [0, 1]):
        loader.set_epoch(epoch)
        seen = []
        for step, batch in enumerate(loader):
            images, labels = batch
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()  # DDP all-reduces here: a rank with fewer batches would hang the rest
            opt.step()
            seen.append({"indices": batch.indices.tolist(), "padded": batch.padded.tolist(),
                         "loss": loss.item()})
            if cfg.get("stop_after") == step + 1:
                record["state"] = loader.state_dict()
                break
        total = torch.tensor([len(seen)])
        dist.all_reduce(total)  # completes only when every rank has finished its epoch
        record["epochs"].append({"epoch": epoch, "batches": seen, "len": len(loader),
                                 "all_ranks_batches": int(total)})
        if "state" in record:
            break
    loader.close()
    Path(cfg["out"], f"rank{rank}.json").write_text(json.dumps(record))
    del model, opt  # before the process group goes: see finish()
    finish()


def finish():
    """End DDP cleanly, after the caller dropped its DDP model (the reducer keeps the last
    backward's gloo work objects alive): collect it while the process group still exists, then
    tear the group down together. Left to interpreter exit, a gloo thread may destroy such a
    work object after Python has finalized (it needs the GIL): std::terminate, SIGABRT."""
    gc.collect()
    dist.barrier()  # no rank tears gloo down while a peer still talks to it
    dist.destroy_process_group()
