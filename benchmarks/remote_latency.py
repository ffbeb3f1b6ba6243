"""Remote shards against local ones, with network latency added to every request.

    python benchmarks/remote_latency.py [--photos real|synthetic] [--latency-ms 20] [--rounds 5]
                                        [--shard-window W] [--cache] [--workers 2] [--batch 64]

The dataset (2000 images) is converted once to TFRecord shards. A range server (HTTP/1.1,
keep-alive, ``Range`` requests, asyncio, its own process) serves that folder on 127.0.0.1 and
holds every request ``--latency-ms`` before answering: the round trip of a far object store.
Each round runs two loaders over the same shards, each in a fresh process, alternating which
goes first: ``fl.loader(local folder)`` and ``fl.loader("http://127.0.0.1:PORT/...")``
(fsspec's HTTP filesystem, the path ``s3://`` takes through s3fs). Same pipeline
(RandomResizedCrop 224 + flip + normalize), batch, workers and seed; each loader runs one
warm-up epoch, then one timed epoch. Printed: img/s of each, the remote/local ratio per round
and its median, the server's request count, and the peak PSS of each loader's process tree
(the memory bound). ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE_BYTES = 64 * 2**20  # a bound below the dataset's ~110 MB: shards are evicted and fetched again


# --- the range server (run as: remote_latency.py --serve DIR PORT LATENCY_MS) ----------------
def serve(folder: Path, port: int, latency_s: float) -> None:
    count = {"requests": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                lines = request.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                count["requests"] += 1
                await asyncio.sleep(latency_s)
                if target == "/_count":
                    body = str(count["requests"]).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
                    continue
                path = folder / target.lstrip("/").split("?")[0]
                if not path.is_file():
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                size = path.stat().st_size
                start, end, status = 0, size - 1, b"200 OK"
                if "range" in headers:
                    first, _, last = headers["range"].split("=", 1)[1].partition("-")
                    start = int(first) if first else size - int(last)
                    end = min(size - 1, int(last)) if (first and last) else size - 1
                    status = b"206 Partial Content"
                extra = b"Content-Range: bytes %d-%d/%d\r\n" % (start, end, size) \
                    if status.startswith(b"206") else b""
                head = b"HTTP/1.1 %s\r\nContent-Length: %d\r\nAccept-Ranges: bytes\r\n%s\r\n" % (
                    status, end - start + 1, extra)
                if method == "HEAD":
                    writer.write(head)
                else:
                    with open(path, "rb") as f:
                        writer.write(head + os.pread(f.fileno(), end - start + 1, start))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- one loader run (run as: remote_latency.py --run URL_OR_PATH ...) ------------------------
def run_once(where: str, workers: int, batch: int, window: int, cache: str) -> dict:
    import fastload as fl
    from fastload.tools.bench.memory import TreeMemory

    pipe = fl.Pipeline(fl.Decode(), fl.RandomResizedCrop(224), fl.RandomFlip(), fl.Normalize())
    kwargs = {"shard_window": window} if window else {}
    source = where
    if cache and "://" in where:
        import shutil
        shutil.rmtree(cache, ignore_errors=True)  # every run starts cold
        source = fl.RemoteTFRecordSource(where, cache_dir=cache, cache_bytes=CACHE_BYTES)
    with TreeMemory() as memory:
        loader = fl.loader(source, pipe, batch_size=batch, shuffle=True, num_workers=workers,
                           backend="torch", seed=0, **kwargs)
        loader.set_epoch(0)
        for _ in loader:  # warm-up epoch: workers started, index read
            pass
        loader.set_epoch(1)
        count, begin = 0, time.perf_counter()
        for images, _ in loader:
            count += len(images)
        seconds = time.perf_counter() - begin
        loader.close()
    return {"images": count, "seconds": seconds, "img_s": count / seconds,
            "peak_pss_mb": memory.peak_pss / 2**20, "peak_rss_mb": memory.peak_rss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", choices=("real", "synthetic"), default="real")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--shard-window", type=int, default=0,
                    help="shard-aware order over this many shards (0: one global shuffle)")
    ap.add_argument("--cache", action="store_true",
                    help="remote: whole shards through a local cache (bounded below the data)")
    ap.add_argument("--json")
    ap.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]), float(args.serve[2]) / 1000)
        return
    if args.run:
        print(json.dumps(run_once(args.run, args.workers, args.batch, args.shard_window,
                                  args.cache_dir)))
        return

    folder = ROOT / f".fastload-{'real-photos' if args.photos == 'real' else 'synthetic'}-2000"
    if not folder.exists():
        maker = "benchmarks/real_photos.py" if args.photos == "real" else None
        if maker is None:
            from fastload.tools.synthetic import make_image_folder
            make_image_folder(folder, 2000)
        else:
            subprocess.run([sys.executable, maker, str(folder)], check=True, cwd=ROOT)
    shards = folder.parent / f"{folder.name}-tfrecord"
    if not (shards / "manifest.json").exists():
        from fastload.tools.convert import convert
        convert(folder, shards, format="tfrecord", shards=8)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(shards.parent), str(port),
                               str(args.latency_ms)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    url = f"http://127.0.0.1:{port}/{shards.name}"
    common = ["--workers", str(args.workers), "--batch", str(args.batch), "--shard-window",
              str(args.shard_window)]
    if args.cache:
        common += ["--cache-dir", str(ROOT / ".fastload-remote-cache")]

    def one(where: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--run", where, *common], check=True,
                             capture_output=True, text=True, cwd=ROOT)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def requests() -> int:
        import urllib.request
        return int(urllib.request.urlopen(f"http://127.0.0.1:{port}/_count").read())

    def server_cpu() -> float:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    rounds = []
    try:
        for k in range(args.rounds):
            results = {}
            for name in (("local", "remote") if k % 2 == 0 else ("remote", "local")):
                before, cpu = requests(), server_cpu()
                results[name] = one(str(shards) if name == "local" else url)
                results[name]["requests"] = requests() - before - 1  # less the count's own
                results[name]["server_cpu_s"] = server_cpu() - cpu
            results["ratio"] = results["remote"]["img_s"] / results["local"]["img_s"]
            rounds.append(results)
            print(f"round {k}: local {results['local']['img_s']:.0f} img/s, remote "
                  f"{results['remote']['img_s']:.0f} img/s ({results['ratio']:.1%}); remote "
                  f"requests {results['remote']['requests']}, peak PSS local "
                  f"{results['local']['peak_pss_mb']:.0f} MB, remote "
                  f"{results['remote']['peak_pss_mb']:.0f} MB; the server's CPU "
                  f"{results['remote']['server_cpu_s']:.2f} s", flush=True)
    finally:
        server.terminate()
        server.wait()
    summary = {"photos": args.photos, "latency_ms": args.latency_ms, "workers": args.workers,
               "batch": args.batch, "shard_window": args.shard_window, "cache": args.cache,
               "median_ratio": statistics.median(r["ratio"] for r in rounds),
               "ratios": [r["ratio"] for r in rounds], "rounds": rounds}
    print(f"median remote/local: {summary['median_ratio']:.1%} over {len(rounds)} rounds "
          f"({min(summary['ratios']):.1%}-{max(summary['ratios']):.1%})")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
