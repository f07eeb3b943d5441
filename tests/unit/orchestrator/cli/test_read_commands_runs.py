"""What `relay runs` and `relay generations` say about a run: a bad ledger, the pipeline's own best, an unfinished run.

Ledgers are written by the engine's own Ledger class into a real artifact store, then edited as a
person or a torn write would; the MLflow store is a real sqlite one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.config import PipelineConfig, RunSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger
from orchestrator.engine.records import StageRecord
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.mlflow_tracker import MlflowTracker
from pipelines.registry import PIPELINES


class ToyConfig(PipelineConfig):
    """What a saved run record needs for `relay generations RUN_ID`: the pipeline and where it tracked."""


SUMMARY = {"score": "evaluate/score"}
TOY = PipelineSpec(name="toy", config_model=ToyConfig, build=lambda config: None, summary=SUMMARY)
TEACHER_FIRST = PipelineSpec(
    "teacher", ToyConfig, lambda config: None, summary=SUMMARY, reference_generations=frozenset({0})
)
SPECS = {"toy": TOY, "teacher": TEACHER_FIRST}


@pytest.fixture(autouse=True)
def no_store_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)


def stage(generation: int | None, score: float | None = None) -> dict[str, Any]:
    return {"generation": generation, "state": "succeeded", "metrics": {} if score is None else {"score": score}}


def recorded_run(workspace: Path, run_id: str, pipeline: str, status: str, scores: dict[int, float]) -> Path:
    """A run record (config + ledger, as the engine writes it) whose generation g scored ``scores[g]``; the ledger."""
    store = ArtifactStore(str(workspace / "artifacts"))
    config = f"pipeline: {pipeline}\nname: {pipeline}\nrun: {{workspace: {workspace}}}\n"
    store.write_record(f"runs/{run_id}/config.yaml", config.encode())
    stages = {f"g{g:02d}/evaluate": stage(g, score) for g, score in scores.items()}
    Ledger(store, pipeline, run_id, "v1", 0, None, generations=dict.fromkeys(scores, 1)).write(status, stages)
    return workspace / "artifacts" / "runs" / run_id / "ledger.json"


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by run id (they end at the first blank line; notes follow it)."""
    lines = out.splitlines()[2:]
    rows = lines[: lines.index("")] if "" in lines else lines
    return {line.split()[0]: line.split() for line in rows}


def runs_table(workspace: Path, capsys: pytest.CaptureFixture) -> dict[str, list[str]]:
    assert main(["runs", "--workspace", str(workspace)], pipelines=SPECS) == 0
    return table_rows(capsys.readouterr().out)


def _pid(ledger: dict) -> None:
    ledger["driver"]["pid"] = "abc"
    ledger["status"] = "RUNNING"


def _started(ledger: dict) -> None:
    ledger["started"] = 5


def _generation(ledger: dict) -> None:
    ledger["stages"]["g00/evaluate"]["generation"] = "x"


def _metric(ledger: dict) -> None:
    ledger["stages"]["g00/evaluate"]["metrics"]["score"] = "n/a"


def _list(ledger: dict) -> list:
    return [ledger]


@pytest.mark.parametrize("spoil", [_pid, _started, _generation, _metric, _list], ids=lambda f: f.__name__[1:])
def test_one_bad_ledger_is_an_unreadable_row_and_the_others_are_listed(tmp_path: Path, capsys, spoil) -> None:
    recorded_run(tmp_path, "good", "toy", "FINISHED", {0: 0.5})
    path = recorded_run(tmp_path, "bad", "toy", "FINISHED", {0: 0.7})
    ledger = json.loads(path.read_text())
    path.write_text(json.dumps(spoil(ledger) or ledger))

    assert main(["runs", "--workspace", str(tmp_path)], pipelines=SPECS) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows["good"][:7] == ["good", "toy", "FINISHED", "1/1", "score", "0.5000", "(g00)"]
    assert rows["bad"][:5] == ["bad", "toy", "UNREADABLE", "-", "-"]
    assert "bad is UNREADABLE: runs/bad/ledger.json" in out  # the reason, under the table


def test_a_ledger_that_is_not_json_is_unreadable_not_a_run_that_never_started(tmp_path: Path, capsys) -> None:
    recorded_run(tmp_path, "bad", "toy", "FINISHED", {0: 0.7}).write_text('{"status": "FINI')
    assert runs_table(tmp_path, capsys)["bad"][:3] == ["bad", "toy", "UNREADABLE"]


def test_a_tune_trial_shows_the_pipeline_its_sweep_saved(tmp_path: Path, capsys) -> None:
    """A trial keeps only a ledger, which names the config's `name` (smoke), not the kind a `relay run` shows."""
    from orchestrator.cli.sweeps.sweep_folder import save_sweep_config

    recorded_run(tmp_path, "run-1", "toy", "FINISHED", {0: 0.5})
    store = ArtifactStore(str(tmp_path / "artifacts"))
    for run_id in ("sweep-a1b2c_00000", "elsewhere-a1b2c_00000"):  # the second sweep wrote to --output elsewhere
        Ledger(store, "smoke", run_id, "v1", 0, None, {0: 1}).write("FINISHED", {"g00/evaluate": stage(0, 0.7)})
    save_sweep_config(tmp_path / "tune" / "sweep", {"pipeline": "toy", "name": "smoke", "tune": {"name": "sweep"}})
    rows = runs_table(tmp_path, capsys)
    assert rows["run-1"][:2] == ["run-1", "toy"]
    assert rows["sweep-a1b2c_00000"][1:7] == ["toy", "FINISHED", "1/1", "score", "0.7000", "(g00)"]
    assert rows["elsewhere-a1b2c_00000"][1:5] == ["smoke", "FINISHED", "1/1", "-"]  # no sweep config: the ledger's


def test_best_leaves_out_the_reference_generations(tmp_path: Path, capsys) -> None:
    """A teacher (g00) that outscores its student is not the pipeline's result."""
    recorded_run(tmp_path, "distilled", "teacher", "FINISHED", {0: 0.975, 1: 0.83})
    recorded_run(tmp_path, "plain", "toy", "FINISHED", {0: 0.975, 1: 0.83})
    rows = runs_table(tmp_path, capsys)
    assert rows["distilled"][4:7] == ["score", "0.8300", "(g01)"]
    assert rows["plain"][4:7] == ["score", "0.9750", "(g00)"]  # no reference generation: every one counts


def test_the_pipelines_that_start_from_a_trained_model_name_it_a_reference() -> None:
    """g00 of these trains the teacher / source-task / old-task model the result starts from; every other
    registered pipeline's generations are all results."""
    references = {name: spec.reference_generations for name, spec in PIPELINES.items() if spec.reference_generations}
    assert references == dict.fromkeys(("distill", "fitnets", "transfer", "lwf"), frozenset({0}))


# --- relay generations on a run that is not finished ----------------------------------------


def tracked(workspace: Path, run_id: str) -> None:
    """The run's generation 0 in the workspace's MLflow store (what a run leaves before it stops)."""
    tracker = MlflowTracker(f"sqlite:///{workspace / 'mlflow.db'}", "relay", system_metrics=False)
    tracker.start_pipeline(run_id, "toy", {}, resume=False)
    tracker.stage_finished(StageRecord("g00/evaluate", 0, "f", False, "FINISHED", metrics={"score": 0.5}))
    tracker.end_pipeline("KILLED")


def interrupted(ledger_path: Path) -> None:
    """As a driver killed mid-run leaves its ledger: RUNNING, on this host, its pid gone."""
    ledger = json.loads(ledger_path.read_text())
    ledger.update(status="RUNNING", driver={"host": os.uname().nodename, "pid": 2**22 + 7})
    ledger_path.write_text(json.dumps(ledger))


@pytest.mark.parametrize(("status", "shown"), [("FAILED", "FAILED"), ("RUNNING", "INTERRUPTED")])
def test_generations_says_when_the_run_is_not_finished(tmp_path: Path, capsys, status: str, shown: str) -> None:
    tracked(tmp_path, "run-f")
    recorded_run(tmp_path, "run-f", "toy", "FINISHED", {0: 0.5})
    assert main(["generations", "run-f", "--workspace", str(tmp_path)], pipelines=SPECS) == 0
    assert "not finished" not in capsys.readouterr().out
    tracked(tmp_path, "run-s")
    path = recorded_run(tmp_path, "run-s", "toy", status, {0: 0.5, 1: 0.6})
    if status == "RUNNING":
        interrupted(path)
    for argv in (["generations", "run-s"], ["generations"]):  # named, and the newest run
        assert main([*argv, "--workspace", str(tmp_path)], pipelines=SPECS) == 0
        out = capsys.readouterr().out
        assert f"Run run-s is {shown}, not finished" in out and "relay resume run-s" in out


def test_resume_of_a_run_whose_driver_is_alive_is_refused(tmp_path: Path, capsys) -> None:
    """Two drivers of one run would compute its stages twice and write one ledger and MLflow record over each other."""
    import subprocess
    import sys

    from orchestrator.cli.run import resume_guard

    ledger = recorded_run(tmp_path, "r1", "toy", "RUNNING", {0: 0.5})  # the driver: this process, alive
    assert main(["resume", "r1", "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    err = capsys.readouterr().err
    assert f"run r1 is still running (driver pid {os.getpid()}" in err and "then resume" in err
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    data = json.loads(ledger.read_text())
    data["driver"]["pid"] = int(dead.stdout)
    ledger.write_text(json.dumps(data))
    resume_guard.check_not_running(ArtifactStore(str(tmp_path / "artifacts")), "r1")  # INTERRUPTED: resumable


def test_a_driver_that_died_before_its_first_ledger_write_reads_interrupted(tmp_path: Path, capsys) -> None:
    """A run killed while Ray started had only its config and command records: NOT STARTED for ever, before."""
    import subprocess
    import sys

    from orchestrator.cli.run.run_record import save_run_record

    store = ArtifactStore(str(tmp_path / "artifacts"))
    config = ToyConfig(pipeline="toy", name="toy", run=RunSettings(workspace=str(tmp_path)))
    save_run_record(store, "alive", config, "toy.yaml", [])  # the driver: this process
    assert runs_table(tmp_path, capsys)["alive"][2] == "STARTING"
    assert main(["resume", "alive", "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    assert "run alive is still running" in capsys.readouterr().err
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    command = tmp_path / "artifacts" / "runs" / "alive" / "command.json"
    data = json.loads(command.read_text())
    data["driver"]["pid"] = int(dead.stdout)
    command.write_text(json.dumps(data))
    assert runs_table(tmp_path, capsys)["alive"][2] == "INTERRUPTED"
    del data["driver"]  # a record from before drivers were recorded
    command.write_text(json.dumps(data))
    assert runs_table(tmp_path, capsys)["alive"][2] == "NOT"  # NOT STARTED
