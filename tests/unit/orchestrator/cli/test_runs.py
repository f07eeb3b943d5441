"""`relay runs` lists the artifact store's runs from their records and ledgers; `--rerun-from` refuses unknown stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner
from orchestrator.registry import PipelineSpec
from tests.unit.orchestrator.engine.toy import RecordingTracker, toy

TOY = PipelineSpec(name="toy", config_model=dict, build=lambda config: toy(), summary={"score": "evaluate/score"})
SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


def run_toy(workspace: Path, run_id: str, **kw) -> None:
    """A finished toy run with its record in the workspace's artifact store, as `relay run` leaves it."""
    (workspace / "artifacts" / "runs" / run_id).mkdir(parents=True)
    (workspace / "artifacts" / "runs" / run_id / "config.yaml").write_text("pipeline: toy\nname: toy\n")
    runner = Runner(ArtifactStore(str(workspace / "artifacts")), LocalExecutor(), RecordingTracker(), "v1", 0)
    runner.run(toy(**kw), run_id)


def test_runs_lists_status_generations_and_best_metric_newest_first(tmp_path: Path, capsys) -> None:
    run_toy(tmp_path, "toy-a", lr=0.25)
    run_toy(tmp_path, "toy-b", lr=0.5)
    runs = tmp_path / "artifacts" / "runs"
    ledger_path = runs / "toy-b" / "ledger.json"
    ledger = json.loads(ledger_path.read_text())  # as a driver killed mid-run leaves it
    ledger.update(status="RUNNING", started="2099-01-01T00:00:00+00:00", driver={**ledger["driver"], "pid": 2**22 + 7})
    ledger["stages"]["g00/evaluate"]["state"] = "running"
    ledger_path.write_text(json.dumps(ledger))
    (runs / "toy-c").mkdir()  # a record whose driver never reached the runner
    (runs / "toy-c" / "config.yaml").write_text("pipeline: toy\nname: toy\n")
    (runs / "toy-d").mkdir()  # a Tune trial keeps a ledger only; a stray folder without either is no run
    (runs / "toy-d" / "ledger.json").write_text(
        json.dumps({**ledger, "status": "FAILED", "started": "2000-01-01T00:00:00+00:00"})
    )
    (runs / "stray").mkdir()

    assert main(["runs", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "pipeline", "status", "generations", "best", "started"]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["toy-b", "toy-a", "toy-d", "toy-c"]
    assert rows[0][:4] == ["toy-b", "toy", "INTERRUPTED", "0/1"]
    assert rows[1][:7] == ["toy-a", "toy", "FINISHED", "1/1", "score", "3.0000", "(g00)"]
    assert rows[2][:4] == ["toy-d", "toy", "FAILED", "0/1"]  # no config: the ledger names the pipeline
    assert rows[3] == ["toy-c", "toy", "NOT", "STARTED", "-", "-", "-"]


def test_runs_in_an_empty_workspace_says_how_to_start_one(tmp_path: Path, capsys) -> None:
    (tmp_path / "ws").mkdir()  # one that is not there is a mistyped path: exit 2 (test_runs_named_store_missing)
    assert main(["runs", "--workspace", str(tmp_path / "ws")]) == 0
    assert "relay run pipelines/configs/smoke.yaml" in capsys.readouterr().out
    assert list((tmp_path / "ws").iterdir()) == []


def test_rerun_from_an_unknown_stage_exits_2_and_writes_nothing(tmp_path: Path, capsys) -> None:
    code = main(["run", str(SMOKE), f"run.workspace={tmp_path / 'ws'}", "--rerun-from", "g09/train"])
    assert code == 2
    message = capsys.readouterr().err
    assert "no stage named 'g09/train'" in message and "g01/train" in message
    assert not (tmp_path / "ws").exists()


def test_rerun_from_and_no_cache_are_one_or_the_other(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(SMOKE), "--rerun-from", "g01/train", "--no-cache"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_an_unfinished_run_says_how_to_go_on_and_a_tune_trial_points_at_its_sweep(tmp_path: Path) -> None:
    """A trial has no config.yaml of its own (its sweep has): `relay resume TRIAL` answered "no run"."""
    from orchestrator.cli.records.run_notes import unfinished_note
    from orchestrator.engine.ledger import CONFIG_FILE, record_path

    store = ArtifactStore(str(tmp_path / "artifacts"))
    Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0).run(toy(), "trial-1", stop_after="g00/train")
    assert "`relay tune CONFIG --resume` continues the sweep" in unfinished_note(store, "trial-1")
    store.write_record(record_path("trial-1", CONFIG_FILE), b"pipeline: toy\n")  # what `relay run` saves
    # the store named, as `relay run` names it: pasted from another folder, a bare `relay resume` found no run
    assert f"finish it with `relay resume trial-1 --artifact-uri {store.uri}`" in unfinished_note(store, "trial-1")
