"""A sweep's cluster kept for --resume, a sweep whose start failed started again, best.yaml's stores, quiet trials."""

from __future__ import annotations

import argparse
import json
import logging
import socket
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.cli.sweeps import sweep_folder, sweep_results
from orchestrator.cli.sweeps import tune as cli_tune
from orchestrator.config import load_yaml, validate_config
from orchestrator.tune.plan import SweepPlan, plan_sweep
from orchestrator.tune.trial import quiet_mlflow_logs
from orchestrator.tune.trial_rows import TrialRow
from pipelines.builders import crest

ROOT = Path(__file__).resolve().parents[4]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"


def sweep_file(tmp_path: Path, name: str = "restartable") -> Path:
    data = load_yaml(SMOKE)
    data["tune"] = {**data["tune"], "name": name}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep_plan(config: Path, output: Path) -> SweepPlan:
    data = load_yaml(config)
    return plan_sweep(data, validate_config(crest.CrestConfig, data), crest.build, "code", output=str(output))


def dead_address() -> str:
    """A HOST:PORT where nothing listens (a port just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def left_by_a_failed_start(config: Path, output: Path, address: str | None = None) -> None:
    """The files `relay tune` writes before its first trial, as a start that could not join its cluster left them."""
    plan = sweep_plan(config, output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "sweep-config.yaml").write_text(yaml.safe_dump(load_yaml(config), sort_keys=False))
    stores = {"artifact_uri": plan.store_uri, "tracking_uri": plan.tracking_uri}
    (output / "sweep-stores.json").write_text(json.dumps(stores | ({"ray_address": address} if address else {})))


def test_a_resume_rejoins_the_cluster_the_sweep_recorded_and_says_when_it_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config, output, address = sweep_file(tmp_path), tmp_path / "out", dead_address()
    left_by_a_failed_start(config, output, address)

    assert main(["tune", str(config), "--output", str(output), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"ran on the Ray cluster at {address}" in err
    assert "--address local" in err


def test_the_stores_file_keeps_the_cluster_the_sweep_joined(tmp_path: Path) -> None:
    plan = sweep_plan(sweep_file(tmp_path), tmp_path / "out")
    (tmp_path / "out").mkdir()
    sweep_folder.save_sweep_stores(tmp_path / "out", plan, "10.0.0.5:6379")
    assert json.loads((tmp_path / "out" / sweep_folder.SWEEP_STORES).read_text())["ray_address"] == "10.0.0.5:6379"


def test_the_resume_line_names_the_cluster_the_sweep_runs_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = argparse.Namespace(config="sweep.yaml", overrides=["train.steps=3"], output=None, address="10.0.0.5:6379")
    plan = sweep_plan(sweep_file(tmp_path), tmp_path / "out")
    assert sweep_results.print_ending(args, plan, done=False, scored=False) == 130
    assert "relay tune sweep.yaml train.steps=3 --address 10.0.0.5:6379 --resume" in capsys.readouterr().out


def test_a_sweep_whose_start_failed_starts_again_under_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The rerun gets past the folder checks to the sweep's own start (the test stops it there)."""
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = sweep_file(tmp_path)
    left_by_a_failed_start(config, tmp_path / "ws" / "tune" / "restartable")
    started: list[str] = []

    class StopAtStart:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def start(self, sweep, *args, **kwargs) -> None:
            started.append(sweep)
            raise cli_tune.ConfigError(["stopped by the test as the sweep starts"], "test")

    monkeypatch.setattr(cli_tune, "SweepTracker", StopAtStart)
    assert main(["tune", str(config)]) == 2
    assert started == ["restartable"]
    assert "not a sweep's" not in capsys.readouterr().err


def test_a_resume_of_a_sweep_whose_start_failed_says_it_never_got_to_a_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = sweep_file(tmp_path)
    left_by_a_failed_start(config, tmp_path / "ws" / "tune" / "restartable")
    assert main(["tune", str(config), "--resume"]) == 2
    assert "never got to a trial); start it without --resume" in capsys.readouterr().err


def test_other_files_in_the_folder_are_still_refused(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / sweep_folder.SWEEP_CONFIG).write_text("{}")
    (output / "notes.txt").write_text("mine")
    plan = sweep_plan(sweep_file(tmp_path), output)
    args = argparse.Namespace(output=str(output), config="sweep.yaml")
    with pytest.raises(cli_tune.ConfigError, match="not a sweep's"):
        sweep_folder.check_output_free(args, plan, False)


def best_yaml_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking: str | None) -> str:
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("RELAY_ARTIFACT_URI", raising=False)
    if tracking:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plan = sweep_plan(sweep_file(tmp_path), tmp_path / "out")
    best = TrialRow("abc12_00000", "restartable-abc12_00000", {}, {0: 0.5}, "completed")
    sweep_results.write_sweep_outputs(tmp_path / "out", [], best, plan)
    return (tmp_path / "out" / "best.yaml").read_text().splitlines()[0]


def test_best_yaml_names_the_tracking_server_the_sweep_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = best_yaml_header(tmp_path, monkeypatch, "http://127.0.0.1:5999")
    assert header == f"# MLFLOW_TRACKING_URI=http://127.0.0.1:5999 relay run {tmp_path / 'out' / 'best.yaml'}"


def test_best_yaml_of_a_sweep_in_the_workspace_store_says_only_relay_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert best_yaml_header(tmp_path, monkeypatch, None) == f"# relay run {tmp_path / 'out' / 'best.yaml'}"


def test_a_trial_logs_mlflow_at_the_drivers_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "INFO")  # put back after the test
    monitor = logging.getLogger("mlflow.system_metrics.system_metrics_monitor")
    before = logging.getLogger("mlflow").level
    try:
        logging.getLogger("mlflow").setLevel(logging.INFO)
        quiet_mlflow_logs("WARNING")
        assert not monitor.isEnabledFor(logging.INFO)
    finally:
        logging.getLogger("mlflow").setLevel(before)
