"""fastload bench: the statistics on a fake loader with known sleeps, the report, the CLI."""

import json
import time

import pytest

import fastload as fl
from fastload.tools.bench import diagnose, measure
from fastload.tools.bench.runner import SCHEMA, BenchConfig, run_bench
from fastload.tools.bench.stall import summarize
from fastload.tools.cli import main


class FakeBatch(tuple):
    pass


class FakeClock:
    """A clock that moves only when told: ``sleep`` advances it (the step), so do slow batches."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def slow_every(n, period, sleep_ms, batch=8, clock=None):
    """Yields n batches; every ``period``-th one takes ``sleep_ms`` to arrive (a starved worker).
    With ``clock`` (a FakeClock) the wait is exact; without, real sleeps."""
    for i in range(n):
        if i % period == period - 1:
            (clock.sleep if clock else time.sleep)(sleep_ms / 1000)
        yield (list(range(batch)), None)


def test_known_sleeps_give_the_right_percentiles_and_spike_period():
    """On a fake clock: every 4th batch waits exactly 40 ms, the others 0; steps take 10 ms."""
    clock = FakeClock()
    stats = measure(slow_every(60, 4, 40, clock=clock), step_ms=10, warmup=4, name="fake",
                    memory=False, clock=clock, sleep=clock.sleep)
    assert stats.iterations == 60 and stats.images == 480
    w = stats.wait_ms
    assert w["p50"] == 0.0
    assert w["p90"] == pytest.approx(40.0) and w["p99"] == pytest.approx(40.0)
    assert w["max"] == pytest.approx(40.0)
    assert stats.stalled_fraction == 14 / 56  # steps 4..59: 14 of them are every 4th
    assert stats.spikes.period == 4 and stats.spikes.mean_ms == pytest.approx(40.0)
    assert stats.seconds == pytest.approx(60 * 0.010 + 15 * 0.040)
    text = diagnose(stats, step_ms=10, workers=4)
    assert "a 4" in text and "every 4th step" in text and "4 workers cannot keep up" in text
    assert "about" in text and "workers would" in text


def test_no_stall_and_step_time():
    clock = FakeClock()
    stats = measure(slow_every(12, 100, 0, clock=clock), step_ms=5, warmup=2, name="fast",
                    memory=False, clock=clock, sleep=clock.sleep)
    assert stats.stalled_fraction == 0 and stats.spikes.count == 0
    assert stats.seconds == pytest.approx(12 * 0.005)
    assert "no stalls" in diagnose(stats, 5, 2)


def test_warm_up_is_reported_separately():
    clock = FakeClock()

    def slow_start():
        clock.sleep(0.05)
        yield ([0], None)
        for _ in range(9):
            yield ([0], None)
    stats = measure(slow_start(), warmup=1, name="x", memory=False, clock=clock,
                    sleep=clock.sleep)
    assert stats.time_to_first_batch_s == pytest.approx(0.05)
    assert stats.warmup_mean_wait_ms == pytest.approx(50)
    assert stats.wait_ms["max"] == 0


def test_empty_iterable_is_an_error():
    with pytest.raises(ValueError, match="yielded no batches"):
        measure(iter([]), name="empty", memory=False)


RUN_KEYS = {"name", "iterations", "images", "seconds", "images_per_s", "steady_images_per_s",
            "time_to_first_batch_s",
            "wait_ms", "stalled_fraction", "warmup_iterations", "warmup_mean_wait_ms",
            "steady_mean_wait_ms", "spikes", "peak_rss_bytes", "peak_pss_bytes",
            "replay_images_per_s", "waits_ms", "extra"}


def test_report_schema_is_stable(photo_folder):
    config = BenchConfig(str(photo_folder), fl.presets.imagenet_train(32), runs=("torch", "baseline"),
                         batch_size=4, workers=1, steps=4)
    report = run_bench(config).to_dict()
    assert set(report) == {"schema", "config", "machine", "runs", "ratios", "replay_images_per_s",
                           "diagnosis", "skipped"}
    assert report["schema"] == SCHEMA
    assert [r["name"] for r in report["runs"]] == ["torch", "baseline"]
    for run in report["runs"]:
        assert set(run) == RUN_KEYS and run["iterations"] == 4 and run["images"] == 16
        assert set(run["wait_ms"]) == {"p50", "p90", "p99", "max", "mean"}
        assert set(run["spikes"]) == {"count", "period", "mean_ms", "threshold_ms", "in_gc", "gc_ms"}
        assert run["peak_rss_bytes"] > 0
    assert set(report["ratios"]) == {"torch/baseline"}
    assert {"platform", "python", "cpus", "torch", "pil", "device", "commit"} <= set(report["machine"])
    json.dumps(report)


def test_cli_bench_end_to_end(tmp_path, capsys):
    out = tmp_path / "report.json"
    png = tmp_path / "plot.png"
    rc = main(["bench", "--synthetic", "24", "--synthetic-dir", str(tmp_path / "syn"),
               "--pipeline", "imagenet_train:64", "--backend", "torch", "--batch-size", "8",
               "--workers", "1", "--epochs", "2", "--step-ms", "1", "--json", str(out),
               "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "images/s" in text and "ratio torch/baseline" in text and "replay ceiling" in text
    report = json.loads(out.read_text())
    assert report["runs"][0]["iterations"] == 6 and report["config"]["step_ms"] == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_bad_arguments(tmp_path, capsys):
    assert main(["bench"]) == 2
    assert "give a SOURCE" in capsys.readouterr().err
    assert main(["bench", str(tmp_path), "--pipeline", "nope"]) == 2
    assert "not a preset" in capsys.readouterr().err


def test_steady_throughput_leaves_out_the_warm_up():
    """images/s counts the whole run; steady images/s only what follows the warm-up batches."""
    taken = [(1.0, 10), (1.1, 20), (1.2, 30), (1.3, 40)]
    stats = summarize("x", [900.0, 1.0, 1.0, 1.0], 40, 1.3, warmup=1, taken=taken)
    assert stats.images_per_s == pytest.approx(40 / 1.3)
    assert stats.steady_images_per_s == pytest.approx(30 / 0.3)


def test_steady_throughput_of_a_run_shorter_than_its_warm_up_is_the_whole_runs():
    """With fewer batches after the warm-up than in it, one prefetched batch's interval is no
    rate: steady images/s falls back to the whole run's."""
    taken = [(1.0, 10), (1.1, 20), (1.2, 30), (1.2001, 40)]
    stats = summarize("x", [900.0, 1.0, 1.0, 0.0], 40, 1.2001, warmup=6, taken=taken)
    assert stats.steady_images_per_s == pytest.approx(40 / 1.2001)


def test_table_columns_stay_apart_when_waits_pass_a_second():
    from fastload.tools.bench.report import table

    slow = summarize("baseline", [1500.0, 12345.6, 2000.0, 1000.0] * 3, 96, 30.0, 2)
    fast = summarize("torch", [0.5, 0.6, 0.7, 0.4] * 3, 96, 0.1, 2)
    config = BenchConfig(source="x", pipeline=fl.presets.imagenet_train(224))
    from fastload.tools.bench.runner import BenchReport

    text = table(BenchReport(config, [fast, slow], None, [], {"device": "cpu", "pil": "p",
                                                                "torch": "t", "cpus": 2}))
    header = next(line for line in text.splitlines() if "wait p50" in line)
    row = next(line for line in text.splitlines() if line.strip().startswith("baseline"))
    assert "12345.6ms" in row and "ms1" not in row and "s1" not in row
    cells = row.split()
    assert len(cells) == len(header.replace("wait p50", "p50").replace("1st batch", "1st")
                             .replace("peak RSS", "RSS").replace("peak PSS", "PSS").split())


def test_spikes_name_garbage_collection_in_the_training_process():
    """Waits during which the training process collected garbage are counted as such and the
    diagnosis says so; late batches without a collection are called single late batches."""
    import gc
    import time

    import torch

    batch = torch.zeros(2, 3)

    def batches(late):
        for i in range(60):
            if i in (9, 17, 30, 38, 51, 57):  # no period
                if late == "gc":
                    for _ in range(3):
                        gc.collect()  # tens of ms with torch and pytest loaded
                else:
                    time.sleep(0.02)
            yield batch

    stats = measure(batches("gc"), warmup=2, name="gc", memory=False)
    assert stats.spikes.count == 6 and stats.spikes.in_gc == 6 and stats.spikes.gc_ms > 6 * 2.0
    assert "6 of the 6 waits over" in diagnose(stats, step_ms=5, workers=2)
    quiet = measure(batches("sleep"), warmup=2, name="late", memory=False)
    assert quiet.spikes.count == 6 and quiet.spikes.in_gc == 0
    assert "6 single waits of ~20 ms, none during garbage collection" in diagnose(quiet, 5, 2)


def test_diagnosis_never_advises_more_workers_than_cpus():
    stats = summarize("torch", [1, 1, 1, 60] * 15, 480, 60 * 0.03, 4)
    stats.spikes.period = 4
    text = diagnose(stats, step_ms=2, workers=4, cpus=2)
    assert "about" in text and "this machine has 2 CPUs" in text and "would help" not in text
    assert "more workers will not help" in text
    stats.spikes.period = 1
    fewer = diagnose(stats, step_ms=2, workers=1, cpus=2)
    assert "up to 2 workers (one per CPU) would help some" in fewer and "has 2 CPUs" in fewer


def test_bench_fails_before_running_what_it_cannot_do(jpeg_folder, capsys, monkeypatch):
    import sys

    import fastload.backends as backends

    assert main(["bench", str(jpeg_folder), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is usable" in err and "Traceback" not in err
    monkeypatch.setattr(backends, "dali_available", lambda: False)
    assert main(["bench", str(jpeg_folder), "--backend", "dali"]) == 2
    assert "--backend dali needs NVIDIA DALI" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["bench", "--synthetic", "50", "--synthetic-dir", str(jpeg_folder.parent / "never"),
                 "--plot", "x.png"]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err
    assert not (jpeg_folder.parent / "never").exists()  # refused before generating anything


def test_a_workers_decode_error_is_one_clean_message(tmp_path, capsys):
    from conftest import write_index_folder

    root = write_index_folder(tmp_path / "d", 12, 2)
    bad = sorted(root.glob("class_00/*.jpg"))[2]
    bad.write_bytes(b"not an image at all")
    code = main(["bench", str(root), "--backend", "torch", "--workers", "1", "--no-baseline",
                 "--batch-size", "4", "--pipeline", "imagenet_eval:32"])
    err = capsys.readouterr().err
    assert code == 2
    message = [line for line in err.splitlines() if "error:" in line]
    assert len(message) == 1 and bad.name in message[0] and "sample" in message[0]
    assert "Traceback" not in err and "BytesIO" not in err


def test_bench_reports_progress_per_run(jpeg_folder, capsys):
    assert main(["bench", str(jpeg_folder), "--backend", "torch", "--workers", "1",
                 "--batch-size", "8", "--pipeline", "imagenet_eval:32"]) == 0
    err = capsys.readouterr().err
    assert "batches: torch (1/2)" in err and "batches: baseline (2/2)" in err
    assert "torch: " in err and "images/s steady" in err and "\r" not in err  # not a terminal


def test_bench_refuses_recipes_the_baseline_or_backend_cannot_run_before_running(jpeg_folder,
                                                                                 capsys):
    assert main(["bench", str(jpeg_folder), "--pipeline", "torchvision_v2:32"]) == 2
    err = capsys.readouterr().err
    assert "baseline does not run TrivialAugmentWide, MixupOrCutMix" in err
    assert "batches: torch" not in err  # refused before any run
    assert main(["bench", str(jpeg_folder), "--pipeline", "deit3:32", "--backend", "dali-native",
                 "--no-baseline"]) == 2
    err = capsys.readouterr().err
    from fastload.backends import dali_available

    expected = "ThreeAugment: backend='dali-native' draws its own" if dali_available() else \
        "--backend dali-native needs NVIDIA DALI"
    assert expected in err


def test_without_a_step_time_the_bench_says_how_to_get_a_verdict(tmp_path, capsys):
    rc = main(["bench", "--synthetic", "16", "--synthetic-dir", str(tmp_path / "syn"),
               "--pipeline", "imagenet_eval:32", "--backend", "torch", "--no-baseline",
               "--batch-size", "8", "--workers", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "data-bound" not in text
    if "no stalls" not in text:  # a loader that never waits needs no advice
        assert "re-run with --step-ms <that time in ms>" in text
    assert "columns: images/s over the whole run; steady = " in text
    assert "peak PSS = the same with shared pages split" in text
