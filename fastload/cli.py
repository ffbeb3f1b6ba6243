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
