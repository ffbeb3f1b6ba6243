"""The GPU check (issue 17): one script, run once on a machine with one CUDA GPU.

    python benchmarks/gpu_check.py [--images 2000] [--quick]
    python benchmarks/gpu_check.py --dry-run-on-cpu --images 200 --quick   # the code paths, here

It records the machine (GPU, driver, CUDA, torch, DALI), runs the `gpu`-marked tests and
the other tests that touch the device tail, loads a generated photo set on every backend with
``device="cuda"``, measures eval parity (CPU torch backend vs each GPU backend, uint8 levels),
runs the stall benchmark at batch 256 with 4, 8 and 16 workers/threads for each backend, and,
with DALI, a hand-written DALI GPU pipeline on DALI's own reader for the 0.9x target. One JSON
goes to ``$OUT/gpu_check.json`` (``$OUT`` set) or ``./gpu_check.json``; a line per step goes to
stdout. Without a GPU it says so and exits 2, without a traceback.

What the machine needs: torch with CUDA; fastload importable (its C extensions optional); DALI
for the DALI rows (else only the torch backend runs). On the lent device machine, which has no
network: ``benchmarks/gpu_prepare.sh`` here, then ``benchmarks/gpu_run.sh`` there (see
benchmarks/README.md, "GPU check"). Targets (issue 17): train pipeline
(RandomResizedCrop 224 + flip + normalize + erasing, batch 256) >= 10,000 img/s through the
dali backend; dali >= 0.9x the hand-written DALI pipeline; eval parity <= 1 level mean.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
TIME_LIMIT_S = 8 * 60


def say(text: str) -> None:
    print(f"gpu_check: {text}", flush=True)


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cpus": len(os.sched_getaffinity(0)),
                            "gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else None}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["driver"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["driver"] = f"nvidia-smi failed: {exc}"
    try:
        import nvidia.dali

        info["dali"] = nvidia.dali.__version__
    except ImportError:
        info["dali"] = None
    import fastload

    info["fastload"] = fastload.__version__
    return info


def run_tests() -> dict[str, Any]:
    """`gpu`-marked tests plus the device-tail and DALI files, counted from a JUnit report."""
    report = Path("/tmp/fastload-gpu-junit.xml")
    files = ["tests/test_dali.py", "tests/test_dali_pixel.py", "tests/test_tail.py",
             "tests/test_mixing.py", "tests/test_loader.py", "tests/test_sampling.py",
             "tests/test_restart_order.py"]
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={report}", *files], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    counts: dict[str, Any] = {"exit": done.returncode, "seconds": round(time.monotonic() - start)}
    if report.exists():
        import xml.etree.ElementTree as ET

        suite = ET.parse(report).getroot()
        suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
        for key in ("tests", "failures", "errors", "skipped"):
            counts[key] = int(suite.get(key, 0))
        counts["failed"] = [case.get("name") for case in suite.iter("testcase")
                            if case.find("failure") is not None or case.find("error") is not None]
    counts["tail"] = done.stdout.strip().splitlines()[-3:]
    return counts


def backends_available() -> list[str]:
    from fastload.backends import dali_available

    return ["torch", "dali", "dali-native"] if dali_available() else ["torch"]


DEVICE = "cuda"  # "cpu" for a dry run of the code paths


def each_backend_on_cuda(folder: str) -> dict[str, Any]:
    import fastload as fl

    out = {}
    for backend in backends_available():
        try:
            with fl.loader(folder, fl.presets.imagenet_train(224), 64, backend=backend,
                           device=DEVICE, num_workers=8, shuffle=True) as loader:
                count, first = 0, None
                for images, labels in loader:
                    first = first or (str(images.device), str(images.dtype), tuple(images.shape))
                    count += len(images)
            out[backend] = {"ok": True, "images": count, "first": first}
        except Exception as exc:  # noqa: BLE001 - recorded, and the check goes on
            out[backend] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        say(f"{backend} on cuda: {out[backend]}")
    return out


def orders_on_cuda(folder: str) -> dict[str, Any]:
    """Weighted draws and a mixture on each backend that takes fastload's order: the batches'
    indices are the draws, on the device, with batch.source for the mixture."""
    import numpy as np

    import fastload as fl
    from fastload.order.sampling import resolve

    out: dict[str, Any] = {}
    size = len(fl.FolderSource(folder))
    weights = np.arange(size) % 3
    cases = {"weighted": (folder, {"sampling": fl.Weighted(weights, num_samples=256)}),
             "mix": (fl.Mix([(folder, 0.75), (folder, 0.25)], epoch_size=256), {})}
    for backend in [b for b in backends_available() if b != "dali-native"]:
        for name, (source, kw) in cases.items():
            try:
                with fl.loader(source, fl.presets.imagenet_train(224), 64, backend=backend,
                               device=DEVICE, num_workers=8, seed=1, **kw) as loader:
                    seen, parts = [], []
                    for batch in loader:
                        seen += batch.indices.tolist()
                        if batch.source is not None:
                            parts += batch.source.tolist()
                    device = str(batch.images.device)
                want = (resolve(kw["sampling"], size, lambda: None).order(1, 0).tolist()
                        if name == "weighted" else source.order.order(1, 0).tolist())
                out[f"{backend}/{name}"] = {"ok": seen == want, "device": device,
                                            "share_of_first": parts.count(0) / len(parts)
                                            if parts else None}
            except Exception as exc:  # noqa: BLE001 - recorded, and the check goes on
                out[f"{backend}/{name}"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            say(f"{backend} {name}: {out[f'{backend}/{name}']}")
    return out


def parity(folder: str) -> dict[str, Any]:
    """Eval pipeline, uint8 output: CPU torch backend vs each backend on the GPU."""
    import torch

    import fastload as fl

    pipe = fl.Pipeline(fl.Decode(), fl.Resize(256), fl.CenterCrop(224))

    def images(backend: str, device: str) -> torch.Tensor:
        with fl.loader(folder, pipe, 64, backend=backend, device=device, num_workers=8) as ld:
            return torch.cat([b.images.cpu() for _, b in zip(range(4), ld)])

    reference = images("torch", "cpu")
    out = {}
    for backend in [b for b in backends_available() if b != "dali-native"]:
        try:
            diff = (images(backend, DEVICE).float() - reference.float()).abs()
            out[backend] = {"mean_levels": round(diff.mean().item(), 4),
                            "max_levels": int(diff.max().item())}
        except Exception as exc:  # noqa: BLE001
            out[backend] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        say(f"eval parity cpu torch vs cuda {backend}: {out[backend]}")
    return out


def bench(folder: str, backend: str, workers: int, steps: int) -> dict[str, Any]:
    report = Path(f"/tmp/fastload-gpu-bench-{backend}-{workers}.json")
    done = subprocess.run([sys.executable, "-m", "fastload", "bench", folder, "--backend",
                           backend, "--device", DEVICE, "--workers", str(workers),
                           "--batch-size", "256", "--no-baseline", "--steps", str(steps),
                           "--epochs", "3", "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    if done.returncode or not report.exists():
        return {"error": (done.stderr or done.stdout).strip()[-500:]}
    run = json.loads(report.read_text())["runs"][0]
    return {"images_per_s": round(run["steady_images_per_s"]),
            "wait_p50_ms": round(run["wait_ms"]["p50"], 2),
            "wait_p99_ms": round(run["wait_ms"]["p99"], 2)}


def hand_written_dali(folder: str, threads: int, batches: int) -> dict[str, Any]:
    """What a DALI user writes: readers.file + mixed decode with a random crop + resize +
    crop_mirror_normalize (flip, normalize), batch 256, on the GPU; img/s after 5 batches."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = DEVICE == "cuda"

    @pipeline_def(batch_size=256, num_threads=threads, device_id=0 if gpu else None,
                  prefetch_queue_depth=2)
    def graph() -> Any:
        jpegs, labels = fn.readers.file(file_root=folder, random_shuffle=True, name="files")
        images = fn.decoders.image_random_crop(jpegs, device="mixed" if gpu else "cpu",
                                               output_type=types.RGB)
        images = fn.resize(images, size=[224, 224], antialias=True)
        images = fn.crop_mirror_normalize(images, mirror=fn.random.coin_flip(), dtype=types.FLOAT,
                                          mean=[124, 116, 104], std=[58, 57, 57])
        return images, labels

    pipe = graph()
    pipe.build()
    for _ in range(5):
        pipe.run()
    start = time.perf_counter()
    for _ in range(batches):
        pipe.run()
    return {"images_per_s": round(256 * batches / (time.perf_counter() - start))}


def timed(results: dict[str, Any], name: str, step: Callable[[], Any]) -> None:
    start = time.monotonic()
    try:
        results[name] = step()
    except Exception as exc:  # noqa: BLE001 - one failed step does not lose the others
        results[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
    say(f"{name}: {time.monotonic() - start:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="one worker count, fewer steps")
    parser.add_argument("--dry-run-on-cpu", action="store_true",
                        help="every step on the CPU (checks the script, measures nothing)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = "cpu" if args.dry_run_on_cpu else "cuda"
    try:
        import torch
    except ImportError:
        say("torch is not installed; nothing measured")
        return 2
    if not torch.cuda.is_available() and not args.dry_run_on_cpu:
        say(f"no CUDA GPU found (torch {torch.__version__}: torch.cuda.is_available() is "
            "False); nothing measured. Run this on the machine with the GPU.")
        return 2
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    say(f"machine: {results['machine']}")
    from fastload.tools.synthetic import make_image_folder

    folder = str(make_image_folder(Path(f"/tmp/fastload-gpu-photos-{args.images}"), args.images,
                                   classes=10))
    timed(results, "tests", run_tests)
    timed(results, "backends_on_cuda", lambda: each_backend_on_cuda(folder))
    timed(results, "orders_on_cuda", lambda: orders_on_cuda(folder))
    timed(results, "eval_parity", lambda: parity(folder))
    steps = 30 if args.quick else 60
    table: dict[str, Any] = {}
    for backend in [b for b in backends_available() if b != "dali-native"]:
        for workers in ([8] if args.quick else [4, 8, 16]):
            if time.monotonic() - started > TIME_LIMIT_S - 60:
                table[f"{backend}/{workers}"] = {"error": "skipped: out of time"}
                continue
            timed(table, f"{backend}/{workers}", lambda: bench(folder, backend, workers, steps))
            say(f"bench {backend} workers={workers}: {table[f'{backend}/{workers}']}")
    results["bench_batch256"] = table
    if results["machine"]["dali"]:
        timed(results, "hand_written_dali", lambda: hand_written_dali(folder, 16, steps))
    results["seconds"] = round(time.monotonic() - started)
    out = Path(os.environ.get("OUT") or ".") / "gpu_check.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    say(f"wrote {out} ({results['seconds']} s)")
    failed = results["tests"].get("failures", 1) if isinstance(results["tests"], dict) else 1
    return 0 if failed == 0 and results["tests"].get("errors", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
