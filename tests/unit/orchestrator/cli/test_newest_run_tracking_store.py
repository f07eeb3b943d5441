"""`relay generations` and `relay ui` without a run id read the newest run `relay runs` lists in the tracking store
its record names, as `relay generations RUN_ID` does.

Before the fix: on a second machine that sees the artifact store (RELAY_ARTIFACT_URI) but has no tracking database of
its own, `relay runs` listed the runs and `relay generations s4` read s4 from the store its record names, while
`relay generations` and `relay ui` said "no runs yet: there is no tracking database at WS/mlflow.db". The records,
ledgers and MLflow stores are real (the engine's Ledger, the MlflowTracker on SQLite files).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator import ui
from orchestrator.cli import main
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import Ledger
from orchestrator.engine.records import StageRecord
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.common import TAG_PIPELINE_RUN, mlflow_client
from orchestrator.tracking.mlflow_tracker import MlflowTracker

TOY = PipelineSpec(name="toy", config_model=dict, build=lambda config: None, summary={"accuracy": "evaluate/accuracy"})
PIPELINES = {"toy": TOY}


@pytest.fixture
def second_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine whose shell names only the shared artifact store (and a workspace of its own, with no database)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RELAY_ARTIFACT_URI", str(tmp_path / "shared" / "artifacts"))
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "m2" / "ws"))
    return tmp_path / "m2" / "ws"


def tracked(db: Path, run_id: str, experiment: str, accuracy: float) -> str:
    """A pipeline run with one generation in the SQLite tracking store ``db``; its URI."""
    db.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db}"
    tracker = MlflowTracker(uri, experiment, system_metrics=False)
    tracker.start_pipeline(run_id, "toy", {"pipeline": "toy"}, resume=False)
    tracker.stage_finished(StageRecord("g00/evaluate", 0, "f", False, "FINISHED", metrics={"accuracy": accuracy}))
    tracker.end_pipeline("FINISHED")
    return uri


def recorded(store_folder: Path, run_id: str, started: str, uri: str, experiment: str) -> None:
    """A finished run's record (config and ledger) as `relay run` leaves it, tracked to ``uri``."""
    store = ArtifactStore(str(store_folder))
    store.write_record(
        f"runs/{run_id}/config.yaml", f"pipeline: toy\ntracking: {{uri: '{uri}', experiment: {experiment}}}\n".encode()
    )
    Ledger(store, "toy", run_id, "v1", 0, None, generations={0: 1}, started=started).write(
        "FINISHED", {"g00/evaluate": {"generation": 0, "state": "succeeded", "metrics": {"accuracy": 0.5}}}
    )


@pytest.fixture
def runs_tracked_on_the_first_machine(tmp_path: Path, second_machine: Path) -> str:
    """Runs r1 (older) and s4 (newest) of the shared store, tracked in the first machine's store; its URI."""
    uri = tracked(tmp_path / "m1" / "mlflow.db", "r1", "team", 0.25)
    tracked(tmp_path / "m1" / "mlflow.db", "s4", "team", 0.75)
    recorded(tmp_path / "shared" / "artifacts", "r1", "2026-12-05T10:00:00+00:00", uri, "team")
    recorded(tmp_path / "shared" / "artifacts", "s4", "2026-12-05T11:00:00+00:00", uri, "team")
    return uri


def shown_run(output: str) -> str:
    """The run a `relay generations` table is of (its `Run RUN_ID: ...` line)."""
    return next(line for line in output.splitlines() if line.startswith("Run ")).split()[1].rstrip(":")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_generations_without_a_run_id_reads_the_newest_run_where_its_record_says(
    runs_tracked_on_the_first_machine: str, second_machine: Path, capsys
) -> None:
    assert main(["generations"], pipelines=PIPELINES) == 0, capsys.readouterr().err
    output = capsys.readouterr().out
    assert shown_run(output) == "s4" and "0.75" in output
    assert "is shown (" not in output, "its own experiment was read: nothing to explain"
    assert not (second_machine / "mlflow.db").exists(), "the default store was made"


def test_ui_serves_the_newest_run_s_tracking_store_and_says_so(
    runs_tracked_on_the_first_machine: str, second_machine: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    served: list[str] = []
    monkeypatch.setattr(ui, "run_server", lambda uri, port, ready_line="": served.append(uri) or print(ready_line) or 0)
    assert main(["ui", "--port", str(free_port())], pipelines=PIPELINES) == 0, capsys.readouterr().err
    output = capsys.readouterr().out
    client = mlflow_client(runs_tracked_on_the_first_machine)
    (s4,) = client.search_runs(
        [client.get_experiment_by_name("team").experiment_id],
        f"tags.`{TAG_PIPELINE_RUN}` = 's4' and tags.`relay.kind` = 'pipeline'",
    )
    assert f"/runs/{s4.info.run_id}?" in output
    assert f"Tracking store: {runs_tracked_on_the_first_machine}, from tracking.uri (in run s4's record" in output
    assert served == [runs_tracked_on_the_first_machine]


def test_a_tracking_store_the_user_names_is_read_instead(
    runs_tracked_on_the_first_machine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """$MLFLOW_TRACKING_URI names the store to read: its newest run is shown, and a line says why not s4."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked(tmp_path / "mine" / "mlflow.db", "mine", "relay", 0.5))
    assert main(["generations"], pipelines=PIPELINES) == 0
    output = capsys.readouterr().out
    assert shown_run(output) == "mine"
    assert f"s4, the newest run `relay runs` lists, was tracked in {runs_tracked_on_the_first_machine}" in output


def test_a_newest_run_s_store_that_cannot_be_read_here_is_named(tmp_path: Path, second_machine: Path, capsys) -> None:
    """Neither its store nor a default one here: exit 2 naming its store, not "no runs yet" of the default one."""
    gone = f"sqlite:///{tmp_path / 'm1' / 'mlflow.db'}"
    recorded(tmp_path / "shared" / "artifacts", "s4", "2026-12-05T11:00:00+00:00", gone, "team")
    assert main(["generations"], pipelines=PIPELINES) == 2
    err = capsys.readouterr().err
    assert f"s4, the newest run `relay runs` lists, was tracked in {gone}, which cannot be read here" in err, err
    assert "no runs yet" not in err
