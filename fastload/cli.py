"""The ``fastload`` command: a thin argparse layer over library functions."""

from __future__ import annotations

import argparse
import sys
from typing import Optional


def _cmd_sample(args: argparse.Namespace) -> int:
    from .synthetic import make_image_folder

    root = make_image_folder(args.dst, args.samples, classes=args.classes, seed=args.seed)
    print(f"wrote {args.samples} photographic-like JPEGs in {args.classes} classes under {root}")
    return 0


def _size(text: str) -> int:
    """'256MB' -> bytes (K/M/G, optional B; powers of 1024)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        return int(float(t[:len(t) - len(unit)]) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 256MB") from None


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    manifest = convert(args.src, args.dst, format=args.format, shards=args.shards,
                       shard_bytes=args.shard_size, max_size=args.max_size, quality=args.quality,
                       split=args.split, workers=args.workers, progress=sys.stderr)
    print(f"{args.dst}: {manifest.samples} samples, {len(manifest.classes)} classes, "
          f"{len(manifest.shards)} {manifest.format} shards")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    report = verify(args.dst)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_index(args: argparse.Namespace) -> int:
    from .verify import build_index

    for path in args.files:
        print(f"wrote {build_index(path)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastload", description="Fast image loading for PyTorch training loops.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sample = sub.add_parser("sample", help="generate a sample ImageFolder of photographic-like JPEGs")
    sample.add_argument("dst", help="folder to write root/<class>/<image>.jpg into")
    sample.add_argument("--samples", type=int, default=1000, help="number of images (default 1000)")
    sample.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    sample.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    sample.set_defaults(run=_cmd_sample)

    conv = sub.add_parser("convert", help="convert an ImageFolder into TFRecord or LMDB shards")
    conv.add_argument("src", help="an ImageFolder: SRC/<class>/<image>")
    conv.add_argument("dst", help="output folder (shards + manifest.json)")
    conv.add_argument("--format", choices=("tfrecord", "lmdb"), default="tfrecord")
    count = conv.add_mutually_exclusive_group()
    count.add_argument("--shards", type=int, help="number of shards")
    count.add_argument("--shard-size", type=_size, help="target shard size, e.g. 256MB (default 128MB)")
    conv.add_argument("--max-size", type=int, help="re-encode images whose longer side exceeds this")
    conv.add_argument("--quality", type=int, help="re-encode every image as JPEG at this quality")
    conv.add_argument("--split", default="train", help="shard name prefix (default train)")
    conv.add_argument("--workers", type=int, help="processes (default: all CPUs)")
    conv.set_defaults(run=_cmd_convert)

    ver = sub.add_parser("verify", help="check every record of a converted dataset")
    ver.add_argument("dst", help="folder holding manifest.json")
    ver.set_defaults(run=_cmd_verify)

    idx = sub.add_parser("index", help="write the .idx index of TFRecord files (DALI's format)")
    idx.add_argument("files", nargs="+", help="TFRecord files")
    idx.set_defaults(run=_cmd_index)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    from .errors import FastloadError

    try:
        return int(args.run(args))
    except FastloadError as exc:
        print(f"fastload {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
