"""DDP training with fastload: run with torchrun (CPU: gloo; GPU: nccl).

    torchrun --nproc_per_node=2 examples/train_ddp.py [--data DIR] [--epochs 2] [--resume CKPT]

Without --data, rank 0 generates a small sample ImageFolder first. Every rank gets the same
number of batches (the last one padded and marked), so the epoch ends without a hang; the
checkpoint holds the loader state, so a run resumed on any number of ranks sees each remaining
sample of the interrupted epoch once.
"""

import argparse
import gc
import os

import torch
import torch.distributed as dist

import fastload as fl
from fastload.tools.synthetic import make_image_folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an ImageFolder, TFRecord or LMDB dataset")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--stop-after", type=int, help="stop mid-epoch after this many steps")
    parser.add_argument("--checkpoint", default="ddp-checkpoint.pt")
    parser.add_argument("--resume", help="a checkpoint written by --stop-after")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")  # torchrun sets RANK, WORLD_SIZE, ...
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    data = args.data or ".fastload-ddp-sample"
    if args.data is None and rank == 0:
        make_image_folder(data, 120, classes=10)
    dist.barrier()

    # made after init_process_group: fastload reads rank and world size at each epoch start
    loader = fl.loader(data, fl.presets.imagenet_train(64), args.batch_size, shuffle=True,
                       num_workers=2, seed=0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 10)).to(loader.device)
    model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    start_epoch = 0
    if args.resume:
        ckpt = torch.load(args.resume, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        loader.load_state_dict(ckpt["loader"])
        start_epoch = ckpt["loader"]["epoch"]

    step = 0
    for epoch in range(start_epoch, args.epochs):
        loader.set_epoch(epoch)  # keeps a resumed position when epoch is the resumed one
        seen = 0
        for images, labels in loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen, step = seen + 1, step + 1
            if args.stop_after and step == args.stop_after:
                if rank == 0:
                    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                                "loader": loader.state_dict()}, args.checkpoint)
                print(f"rank {rank}: stopped at step {step}, checkpoint {args.checkpoint}")
                loader.close()
                del model, opt
                finish()
                return
        total = torch.tensor([seen], device=loader.device)
        dist.all_reduce(total)  # reached by every rank: equal batch counts, no hang
        print(f"rank {rank}/{world}: epoch {epoch}: {seen} batches (all ranks: {int(total)}), "
              f"loss {loss.item():.3f}")
    loader.close()
    evaluate(model, data, args.batch_size, rank)
    del model, opt
    finish()


def finish():
    """Tear DDP down after dropping the model (its reducer holds the last backward's gloo
    work objects; destroyed by a gloo thread during interpreter exit they abort the process:
    std::terminate, SIGABRT), and only when every rank is done with the group."""
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def evaluate(model, data, batch_size, rank):
    """Exact distributed accuracy: each rank reads its share (the ranks' batch counts are
    evened out by repeats marked in batch.padded); ExactMean leaves the repeats out and sums
    over the ranks, so every sample counts exactly once."""
    accuracy = fl.ExactMean()
    with fl.loader(data, fl.presets.imagenet_eval(64), batch_size, num_workers=2) as loader:
        model.eval()
        with torch.no_grad():
            for batch in loader:
                images, labels = batch
                accuracy.update(model(images).argmax(1) == labels, batch)
    top1 = accuracy.compute()  # the same on every rank
    print(f"rank {rank}: eval top-1 {top1:.4f} over {len(loader.source)} samples, each once",
          flush=True)


if __name__ == "__main__":
    main()
