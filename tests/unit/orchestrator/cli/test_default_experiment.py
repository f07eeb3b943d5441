"""`relay generations` and `relay ui` without a run id show the newest run `relay runs` lists, in its experiment.

Before the fix: after `relay run smoke.yaml` and `relay run smoke.yaml 'tracking.experiment=my exp'`, `relay runs`
listed the second run first, while `relay generations` printed the first (the newest of the `relay` experiment) without
a word, and `relay ui` opened it. Where the newest run's experiment cannot be read here, the default experiment is read,
and a line says so and names `--experiment`. The runs are real (local executor, real MLflow sqlite stores).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
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

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")
TINY = ["run.executor=local", "train.steps=3", "crest.generations=1"]
NOTE = "is shown ("  # the line that says the default experiment was read, and why
TOY = PipelineSpec(name="toy", config_model=dict, build=lambda config: None, summary={"accuracy": "evaluate/accuracy"})


@pytest.fixture(autouse=True)
def no_store_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's own stores must not decide where these commands read."""
    for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace where run `older` tracked in `relay`, then run `newer` in `my exp` (the two runs that showed it)."""
    workspace = tmp_path_factory.mktemp("ws")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "RELAY_ARTIFACT_URI", "RELAY_WORKSPACE"):
            patch.delenv(name, raising=False)
        argv = ["run", SMOKE, *TINY, f"run.workspace={workspace}"]
        assert main([*argv, "--run-id", "older"]) == 0
        assert main([*argv, "tracking.experiment=my exp", "--run-id", "newer"]) == 0
    yield workspace


def shown_run(output: str) -> str:
    """The run a `relay generations` table is of (its `Run RUN_ID: ...` line)."""
    return next(line for line in output.splitlines() if line.startswith("Run ")).split()[1].rstrip(":")


def mlflow_run_id(workspace: Path, relay_run: str) -> str:
    """The MLflow id of the Relay run's pipeline run, whichever experiment holds it."""
    client = mlflow_client(f"sqlite:///{workspace / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.`{TAG_PIPELINE_RUN}` = '{relay_run}' and tags.`relay.kind` = 'pipeline'"
    (found,) = client.search_runs(experiments, query)
    return found.info.run_id


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ui_url(workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *flags: str) -> str:
    """What `relay ui` prints (its server not started: the URL is what is checked)."""
    monkeypatch.setattr(ui, "run_server", lambda uri, port, ready_line="": print(ready_line) or 0)
    capsys.readouterr()
    assert main(["ui", "--workspace", str(workspace), "--port", str(free_port()), *flags]) == 0
    return capsys.readouterr().out


def test_generations_without_a_run_id_shows_the_newest_run_relay_runs_lists(two_experiments: Path, capsys) -> None:
    assert main(["runs", "--workspace", str(two_experiments)]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[0] == "newer"
    assert main(["generations", "--workspace", str(two_experiments)]) == 0
    output = capsys.readouterr().out
    assert shown_run(output) == "newer"
    assert NOTE not in output, "its own experiment was read: nothing to explain"


def test_experiment_without_a_run_id_still_reads_that_experiment_s_newest(two_experiments: Path, capsys) -> None:
    assert main(["generations", "--workspace", str(two_experiments), "--experiment", "relay"]) == 0
    assert shown_run(capsys.readouterr().out) == "older"


def test_ui_opens_the_newest_run_relay_runs_lists(two_experiments: Path, monkeypatch, capsys) -> None:
    output = ui_url(two_experiments, monkeypatch, capsys)
    assert f"/runs/{mlflow_run_id(two_experiments, 'newer')}?" in output and NOTE not in output
    output = ui_url(two_experiments, monkeypatch, capsys, "--experiment", "relay")
    assert f"/runs/{mlflow_run_id(two_experiments, 'older')}?" in output


def tracked(workspace: Path, run_id: str, experiment: str) -> None:
    """A pipeline run with one generation in the workspace's MLflow store, in ``experiment``."""
    tracker = MlflowTracker(f"sqlite:///{workspace / 'mlflow.db'}", experiment, system_metrics=False)
    tracker.start_pipeline(run_id, "toy", {"pipeline": "toy"}, resume=False)
    tracker.stage_finished(StageRecord("g00/evaluate", 0, "f", False, "FINISHED", metrics={"accuracy": 0.75}))
    tracker.end_pipeline("FINISHED")


def recorded(workspace: Path, run_id: str, started: str, config: str | None) -> None:
    """A run's record as `relay run` leaves it (its config, when given, and its ledger), started at ``started``."""
    store = ArtifactStore(str(workspace / "artifacts"))
    if config is not None:
        store.write_record(f"runs/{run_id}/config.yaml", config.encode())
    Ledger(store, "toy", run_id, "v1", 0, None, generations={0: 1}, started=started).write(
        "FINISHED", {"g00/evaluate": {"generation": 0, "state": "succeeded", "metrics": {"accuracy": 0.75}}}
    )


def test_a_newest_run_tracked_elsewhere_reads_the_default_experiment_and_says_so(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Its experiment is in another tracking store: this one's `relay` is read, and the line names --experiment."""
    tracked(tmp_path, "here", "relay")
    recorded(
        tmp_path,
        "here",
        "2026-12-05T10:00:00+00:00",
        f"pipeline: toy\ntracking: {{uri: sqlite:///{tmp_path / 'mlflow.db'}}}\n",
    )
    elsewhere = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    recorded(
        tmp_path,
        "far",
        "2026-12-05T11:00:00+00:00",
        f"pipeline: toy\ntracking: {{uri: '{elsewhere}', experiment: far}}\n",
    )
    assert main(["generations", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    output = capsys.readouterr().out
    assert shown_run(output) == "here"
    note = next(line for line in output.splitlines() if NOTE in line)
    assert (
        "experiment 'relay'" in note and f"far, the newest run `relay runs` lists, was tracked in {elsewhere}" in note
    )
    assert "--experiment NAME" in note
    output = ui_url(tmp_path, monkeypatch, capsys)
    assert f"/runs/{mlflow_run_id(tmp_path, 'here')}?" in output and note in output


def test_a_newest_tune_trial_reads_the_experiment_its_sweep_names(tmp_path: Path, monkeypatch, capsys) -> None:
    """A trial keeps no config of its own: its sweep's saved config names the experiment."""
    tracked(tmp_path, "plain", "relay")
    recorded(tmp_path, "plain", "2026-12-05T10:00:00+00:00", "pipeline: toy\n")
    tracked(tmp_path, "sweep-a1b2c_00000", "sweeps")
    recorded(tmp_path, "sweep-a1b2c_00000", "2026-12-05T11:00:00+00:00", None)
    (tmp_path / "tune" / "sweep").mkdir(parents=True)
    (tmp_path / "tune" / "sweep" / "sweep-config.yaml").write_text("pipeline: toy\ntracking: {experiment: sweeps}\n")
    assert main(["generations", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    output = capsys.readouterr().out
    assert shown_run(output) == "sweep-a1b2c_00000" and NOTE not in output
    assert f"/runs/{mlflow_run_id(tmp_path, 'sweep-a1b2c_00000')}?" in ui_url(tmp_path, monkeypatch, capsys)
