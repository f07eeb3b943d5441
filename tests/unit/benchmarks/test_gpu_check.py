"""benchmarks/gpu_check.py's CPU side: parsing nvidia-smi and JUnit, sampling, the table and the JSON.

The GPU parts themselves run only under `make gpu-check` on a GPU machine; here they get fake
inputs, the script must skip cleanly (exit 0, with the reason) where CUDA is absent, and its CPU
dry run must carry every part through (real training steps, a real Ray instance and actors), so
the check cannot rot between the rare sessions that have a GPU.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
gpu_check = importlib.import_module("gpu_check")
_common = importlib.import_module("_common")

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="14" time="9.1"></testsuite></testsuites>
"""


def test_nvidia_smi_lines_become_samples_and_junk_lines_are_skipped():
    text = "37, 1024\n[N/A], [N/A]\n\n100, 2048.5\n"
    assert gpu_check.parse_nvidia_smi(text) == [(37.0, 1024.0), (100.0, 2048.5)]


def test_utilisation_summary_of_samples_and_of_none():
    summary = gpu_check.utilisation_summary([(20.0, 100.0), (80.0, 300.0), (50.0, 200.0)])
    assert summary == {"gpu_util_mean_pct": 50.0, "gpu_util_max_pct": 80.0, "gpu_mem_max_mb": 300.0}
    assert set(gpu_check.utilisation_summary([]).values()) == {None}


def test_junit_counts_count_errors_as_failures():
    assert gpu_check.junit_counts(JUNIT) == {"passed": 8, "failed": 3, "skipped": 3}


def test_sampling_takes_at_least_the_first_sample_and_stops_with_the_block():
    calls = []

    def read():
        calls.append(time.perf_counter())
        return 42.0, 512.0

    with gpu_check.sampled(read=read) as samples:
        pass
    taken = len(calls)
    time.sleep(3 * gpu_check.SAMPLE_EVERY_S)
    assert samples and samples[0] == (42.0, 512.0)
    assert len(calls) == taken  # the thread ended with the block


def test_a_part_that_raises_becomes_a_failed_row():
    def broken():
        raise RuntimeError("CUDA error: out of memory")

    rows, ok = gpu_check.guarded("training, wrn28_2", broken)
    assert not ok
    assert rows[0]["check"] == "training, wrn28_2" and rows[0]["value"] == "FAILED"
    assert "RuntimeError: CUDA error: out of memory" in rows[0]["note"]


def test_report_prints_one_table_and_writes_the_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_common, "ROOT", tmp_path)
    monkeypatch.setattr(_common, "RESULTS", tmp_path / "results")
    rows = [
        gpu_check.row("tests/gpu (pytest)", "11 passed, 0 failed, 1 skipped", "tests", note="80 s"),
        gpu_check.row("training, small_cnn", 12345.6, "images/s", [(90.0, 900.0), (70.0, 1000.0)]),
        gpu_check.row("labeling on actors", "skipped", "", note="ray is not installed"),
    ]
    gpu_check.report(rows, ok=True, machine_note="fake GPU, 1 GPU(s)")
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| check"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == gpu_check.COLUMNS
    assert "| training, small_cnn" in out and "12,346" in out and "gpu-check: OK" in out
    assert "None" not in out  # a row without samples shows blanks
    data = json.loads((tmp_path / "results" / "gpu_check.json").read_text())
    assert data["ok"] is True and data["title"] == "GPU check (fake GPU, 1 GPU(s))"
    assert data["rows"][1]["gpu_util_mean_pct"] == 80.0 and data["rows"][1]["gpu_mem_max_mb"] == 1000.0
    assert data["rows"][2]["gpu_util_mean_pct"] is None


def test_without_cuda_the_check_skips_with_the_reason():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: `make gpu-check` runs the real check")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--skip-tests"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped: --device cuda asked for, but torch.cuda.is_available() is False" in done.stdout


@pytest.mark.integration
def test_the_cpu_dry_run_carries_every_part_through_and_writes_its_own_json(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["RELAY_BENCHMARK_RESULTS"] = str(tmp_path)
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--skip-tests"]
    command += ["--rows", "16384", "--steps", "2", "--actors", "2", "--models", "small_cnn"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check_cpu.json").read_text())
    assert data["ok"] is True and "CPU dry run" in data["title"]
    values = {row["check"]: row["value"] for row in data["rows"]}
    threads = sorted({1, os.cpu_count() or 1})
    training = [f"training, small_cnn, {t} CPU thread{'s' if t > 1 else ''}" for t in threads]
    assert sorted(values) == sorted(
        ["labeling stage, 1 process", "labeling stage, 2 workers"]
        + training
        + [f"{name}, no augmentation" for name in training]
        + [f"{name}: augmentation" for name in training]
    )
    assert all(isinstance(value, float) and value > 0 for value in values.values()), values
    augmentation = next(row for row in data["rows"] if row["check"] == f"{training[0]}: augmentation")
    assert augmentation["unit"] == "ms/step" and "% of a " in augmentation["note"]
