"""The ``fastload`` command: a thin argparse layer over library functions."""

from __future__ import annotations

import argparse
import sys
from typing import Optional


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _cmd_sample(args: argparse.Namespace) -> int:
    from .synthetic import make_image_folder

    root = make_image_folder(args.dst, args.samples, classes=args.classes, seed=args.seed,
                             workers=_cpus(), progress=sys.stderr)
    print(f"wrote {args.samples} photographic-like JPEGs in {args.classes} classes under {root}")
    return 0


def _version() -> str:
    """The installed distribution's version (``fastload-images``), else the package's."""
    from importlib import metadata

    from .. import DISTRIBUTION, __version__

    try:
        return f"{metadata.version(DISTRIBUTION)} ({DISTRIBUTION})"
    except metadata.PackageNotFoundError:
        return f"{__version__} (not installed)"


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
                       split=args.split, restarts=args.restarts, workers=args.workers,
                       progress=sys.stderr, staging=args.staging)
    print(f"{args.dst}: {manifest.samples} samples, {len(manifest.classes)} classes, "
          f"{len(manifest.shards)} {manifest.format} shards")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..sources.remote import is_url
    from .verify import verify

    if is_url(args.dst):
        from .remote_dataset import verify_url

        report = verify_url(args.dst)
    else:
        report = verify(args.dst)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_index(args: argparse.Namespace) -> int:
    from ..sources.remote import is_url
    from .verify import build_index

    for path in args.files:
        if is_url(path):
            from .remote_dataset import index_url

            print(f"wrote {index_url(path)}")
        else:
            print(f"wrote {build_index(path)}")
    return 0


def _pipeline(text: str):
    """A preset name (``imagenet_train``, ``imagenet_eval:160``) or a JSON file."""
    from pathlib import Path

    from ..errors import SpecError
    from ..ops.presets import PRESETS
    from ..ops.spec import Pipeline

    name, _, size = text.partition(":")
    if name in PRESETS:
        try:
            return PRESETS[name](int(size)) if size else PRESETS[name]()
        except ValueError:
            raise SpecError(f"--pipeline {text!r}: the size after ':' must be an int") from None
    path = Path(text)
    if not path.is_file():
        raise SpecError(f"--pipeline {text!r}: not a preset ({', '.join(PRESETS)}) nor a JSON file")
    return Pipeline.from_json(path.read_text())


def _cmd_bench(args: argparse.Namespace) -> int:
    from ..backends import DALI_INSTALL, check_ops, dali_available
    from .bench.report import check_plotting, plot, table, write_json
    from .bench.runner import BenchConfig, run_bench
    from ..device import check_device
    from ..errors import BackendUnavailable, SpecError

    source = args.source
    if source is None and not args.synthetic:
        raise SpecError("bench: give a SOURCE (folder, TFRecord or LMDB) or --synthetic N")
    # everything that can fail fails now, not after minutes of measuring
    if args.backend in ("dali", "dali-native") and not dali_available():
        raise BackendUnavailable(f"--backend {args.backend} needs NVIDIA DALI; install it with: "
                                 f"{DALI_INSTALL}")
    check_device(args.device)
    if args.plot:
        check_plotting()
    pipeline = _pipeline(args.pipeline)
    if args.backend != "all":
        check_ops(args.backend, pipeline)
    if args.baseline:
        from .bench.baseline import check_expressible

        check_expressible(pipeline)
    if args.synthetic:
        from .synthetic import make_image_folder

        root = args.synthetic_dir or f".fastload-synthetic-{args.synthetic}"
        source = str(make_image_folder(root, args.synthetic, classes=10, workers=_cpus(),
                                       progress=sys.stderr))
    runs = {"torch": ("torch",), "dali": ("dali",), "dali-native": ("dali-native",),
            "all": ("torch", "dali", "dali-native")}[args.backend]
    if args.baseline:
        runs = runs + ("baseline",)
    config = BenchConfig(source=source, pipeline=pipeline, runs=runs,
                         batch_size=args.batch_size, workers=args.workers, step_ms=args.step_ms,
                         epochs=args.epochs, steps=args.steps, device=args.device, seed=args.seed,
                         on_error=args.on_error)
    report = run_bench(config, progress=sys.stderr)
    print(table(report))
    if args.json:
        write_json(report, args.json)
    if args.plot:
        plot(report, args.plot)
    return 0


class _Defaults(argparse.HelpFormatter):
    """Each option's help ends with its default, when it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text or not action.option_strings or \
                any(action.default is v for v in (None, False, True, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastload", description="Fast image loading for PyTorch training loops.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: add_parser(*a, formatter_class=_Defaults, **k)  # type: ignore
    sample = sub.add_parser("sample", help="generate a sample ImageFolder of photographic-like JPEGs")
    sample.add_argument("dst", help="folder to write root/<class>/<image>.jpg into")
    sample.add_argument("--samples", type=int, default=1000, help="number of images")
    sample.add_argument("--classes", type=int, default=10, help="number of classes")
    sample.add_argument("--seed", type=int, default=0, help="generator seed")
    sample.set_defaults(run=_cmd_sample)

    conv = sub.add_parser("convert", help="convert a dataset into TFRecord, LMDB or WebDataset "
                          "shards")
    conv.add_argument("src", help="what fl.loader reads: an ImageFolder (SRC/<class>/<image>), a "
                      "list file (.csv/.tsv/.jsonl/.txt), TFRecord, LMDB, WebDataset (.tar) or "
                      "Parquet shards, optionally prefixed folder:, list:, tfrecord:, lmdb:, "
                      "webdataset:, parquet:")
    conv.add_argument("dst", help="output folder (shards + manifest.json), or a URL "
                      "(s3://bucket/prefix, gs://..., TFRecord only; credentials as fsspec finds them)")
    conv.add_argument("--staging", help="for a URL: the local folder the shards are made in "
                      "before upload (default ./.fastload-staging-<digest>; a re-run resumes)")
    conv.add_argument("--format", choices=("tfrecord", "lmdb", "webdataset"), default="tfrecord",
                      help="output format")
    count = conv.add_mutually_exclusive_group()
    count.add_argument("--shards", type=int, help="number of shards")
    count.add_argument("--shard-size", type=_size, help="target shard size, e.g. 256MB (default 128MB)")
    conv.add_argument("--max-size", type=int, help="re-encode images whose longer side exceeds this")
    conv.add_argument("--quality", type=int, help="re-encode every image as JPEG at this quality")
    conv.add_argument("--split", default="train", help="shard name prefix")
    conv.add_argument("--no-restarts", dest="restarts", action="store_false",
                      help="copy JPEG bytes as they are (default: rewrite them losslessly with "
                      "restart markers, which makes crops ~25%% cheaper to decode)")
    conv.add_argument("--workers", type=int, help="processes (default: all CPUs)")
    conv.set_defaults(run=_cmd_convert)

    ver = sub.add_parser("verify", help="check every record of a converted dataset")
    ver.add_argument("dst", help="folder holding manifest.json, or its URL")
    ver.set_defaults(run=_cmd_verify)

    idx = sub.add_parser("index", help="write the .idx index of TFRecord files (DALI's format)")
    idx.add_argument("files", nargs="+", help="TFRecord files (or their URLs)")
    idx.set_defaults(run=_cmd_index)

    bench = sub.add_parser("bench", help="measure per-iteration stall: fastload vs the baseline",
                           description="Measure how long a training loop waits on its data.")
    bench.add_argument("source", nargs="?", help="folder, TFRecord or LMDB (or use --synthetic)")
    bench.add_argument("--synthetic", type=int, metavar="N",
                       help="generate N photographic-like JPEGs (~500x375) and bench on them")
    bench.add_argument("--synthetic-dir", help="where --synthetic writes (default ./.fastload-synthetic-N)")
    bench.add_argument("--pipeline", default="imagenet_train",
                       help="preset[:size] (imagenet_train, imagenet_eval, torchvision_v2, "
                            "timm_randaugment, deit3) or a pipeline JSON file")
    bench.add_argument("--backend", choices=("torch", "dali", "dali-native", "all"), default="all",
                       help="fastload backends to run (all: those installed)")
    bench.add_argument("--no-baseline", dest="baseline", action="store_false",
                       help="skip the plain DataLoader baseline")
    bench.add_argument("--batch-size", type=int, default=64, help="images per batch")
    bench.add_argument("--workers", type=int, default=_cpus(), help="worker processes (default: CPUs)")
    bench.add_argument("--step-ms", type=float, default=0.0,
                       help="simulated training step (ms): your model's step time, for a verdict "
                            "on your loop; 0 measures the loader flat out")
    bench.add_argument("--epochs", type=int, default=1, help="epochs per run")
    bench.add_argument("--steps", type=int, help="stop each run after this many iterations")
    bench.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--seed", type=int, default=0, help="shuffle and augmentation seed")
    bench.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                       help="bad samples: stop with an error (raise), or skip them and count them")
    bench.add_argument("--json", help="write the full report as JSON here")
    bench.add_argument("--plot", help="write a PNG plot here (needs matplotlib)")
    bench.set_defaults(run=_cmd_bench)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    from ..errors import FastloadError

    try:
        return int(args.run(args))
    except FastloadError as exc:
        print(f"fastload {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
