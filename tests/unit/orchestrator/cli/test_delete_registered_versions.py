"""`relay delete` says what it leaves of a run in the model registry: its versions, and the aliases on them.

Why: the versions a run registered are kept (another run may share them), but the registered model's
aliases (``gen-00``, ``newest``) went on naming them, their source run deleted, and nothing said so; and a
run whose MLflow pipeline run someone had already deleted (`mlflow runs delete`) lost the "kept: the
registered model versions ..." line, though its versions were kept all the same. Here a real artifact store
holds the runs' records (a real Runner's ledgers) and a real SQLite MLflow store holds what the tracker
records of them: the pipeline run with its ``relay.registered_models`` tag, a run per generation, the
versions logged from those runs and the aliases on them.
"""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import ViewType

from orchestrator.cli import main
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner
from tests.unit.orchestrator.engine.toy import RecordingTracker, toy

NAME = "smoke"


def finished_run(workspace: Path, run_id: str, lr: float) -> None:
    """A finished run's record (its ledger) in the workspace's artifact store; runs of another ``lr`` share only
    their data stage."""
    store = ArtifactStore(str(workspace / "artifacts"))
    Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0).run(toy(lr=lr), run_id)


def client_of(workspace: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")


def tracked(workspace: Path, run_id: str, versions: dict[str, str | None]) -> tuple[str, dict[str, str]]:
    """The MLflow runs of ``run_id`` as the tracker leaves them: a pipeline run and a run per generation alias of
    ``versions`` (alias -> the version it reused, or None: a new version logged from that generation's run).
    Returns the pipeline run's id and alias -> version."""
    client = client_of(workspace)
    experiment = client.get_experiment_by_name("relay") or client.get_experiment(
        client.create_experiment("relay", artifact_location=(workspace / "mlartifacts").as_uri())
    )
    tags = {"relay.pipeline_run": run_id}
    parent = client.create_run(experiment.experiment_id, tags={**tags, "relay.kind": "pipeline"}, run_name=run_id)
    if not client.search_registered_models(f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    registered = {}
    for alias, reused in versions.items():
        generation = client.create_run(
            experiment.experiment_id,
            tags={**tags, "relay.kind": "generation", "mlflow.parentRunId": parent.info.run_id},
            run_name=alias,
        )
        if reused is None:
            source = f"{generation.info.artifact_uri}/model"
            logged = client.create_model_version(NAME, source, run_id=generation.info.run_id, tags=tags)
            reused = str(logged.version)
        registered[alias] = reused
    entries = ", ".join(f"models:/{NAME}/{version} ({alias})" for alias, version in registered.items())
    client.set_tag(parent.info.run_id, "relay.registered_models", entries)
    return parent.info.run_id, registered


def point(workspace: Path, aliases: dict[str, str]) -> None:
    for alias, version in aliases.items():
        client_of(workspace).set_registered_model_alias(NAME, alias, version)


def aliases_now(workspace: Path) -> dict[str, str]:
    return {alias: str(version) for alias, version in client_of(workspace).get_registered_model(NAME).aliases.items()}


def deleted(workspace: Path, run_id: str, capsys) -> str:
    assert main(["delete", run_id, "--yes", "--workspace", str(workspace)]) == 0
    return capsys.readouterr().out


def test_delete_names_the_aliases_left_on_the_versions_its_runs_logged(tmp_path: Path, capsys) -> None:
    finished_run(tmp_path, "first", lr=0.25)
    finished_run(tmp_path, "second", lr=0.5)
    _, first = tracked(tmp_path, "first", {"gen-00": None, "gen-01": None})  # versions 1, 2
    _, second = tracked(tmp_path, "second", {"gen-00": first["gen-00"], "gen-01": None})  # reuses 1; logs 3
    point(tmp_path, {**second, "newest": second["gen-01"]})

    out = deleted(tmp_path, "second", capsys)

    assert f"kept: the registered model versions models:/{NAME}/1 (gen-00), models:/{NAME}/3 (gen-01)" in out
    note = next(line for line in out.splitlines() if "aliases stay on versions" in line)
    assert f"logged by the MLflow runs this deletes: {NAME}@gen-01 (version 3), {NAME}@newest (version 3);" in note
    assert "gen-00" not in note, "version 1 is the first run's: its source run is not deleted"
    assert f"MLFLOW_TRACKING_URI=sqlite:///{tmp_path / 'mlflow.db'} python -c" in note
    assert "set_registered_model_alias('NAME', 'ALIAS', VERSION)" in note
    assert aliases_now(tmp_path) == {"gen-00": "1", "gen-01": "3", "newest": "3"}, "delete moves no alias"
    assert [str(v.version) for v in client_of(tmp_path).search_model_versions(f"name = '{NAME}'")] == ["3", "2", "1"]


def test_delete_says_nothing_of_aliases_when_none_points_at_its_versions(tmp_path: Path, capsys) -> None:
    finished_run(tmp_path, "first", lr=0.25)
    finished_run(tmp_path, "second", lr=0.5)
    _, first = tracked(tmp_path, "first", {"gen-00": None})
    tracked(tmp_path, "second", {"gen-00": None})
    point(tmp_path, {**first, "newest": first["gen-00"]})

    out = deleted(tmp_path, "second", capsys)

    assert f"kept: the registered model versions models:/{NAME}/2 (gen-00)" in out
    assert "aliases stay on versions" not in out


def test_delete_of_a_run_whose_pipeline_run_was_deleted_in_mlflow_still_says_its_versions_are_kept(
    tmp_path: Path, capsys
) -> None:
    """`mlflow runs delete --run-id PARENT` first: the rest is deleted, and the versions kept, as said."""
    finished_run(tmp_path, "gone", lr=0.25)
    parent, versions = tracked(tmp_path, "gone", {"gen-00": None, "gen-01": None})
    point(tmp_path, {**versions, "newest": versions["gen-01"]})
    client_of(tmp_path).delete_run(parent)

    out = deleted(tmp_path, "gone", capsys)

    assert f"kept: the registered model versions models:/{NAME}/1 (gen-00), models:/{NAME}/2 (gen-01)" in out
    assert "2 MLflow run(s) in sqlite:///" in out and "(1 more already deleted in MLflow)" in out
    assert f"{NAME}@gen-00 (version 1), {NAME}@gen-01 (version 2), {NAME}@newest (version 2)" in out
    experiment = client_of(tmp_path).get_experiment_by_name("relay").experiment_id
    query = "tags.`relay.pipeline_run` = 'gone'"
    assert client_of(tmp_path).search_runs([experiment], query, run_view_type=ViewType.ACTIVE_ONLY) == []
    assert len(client_of(tmp_path).search_model_versions(f"name = '{NAME}'")) == 2


def test_delete_of_a_run_whose_stage_folders_others_all_use_says_none(tmp_path: Path, capsys) -> None:
    """Two runs of the same stages share every folder: the count line read "0 stage folder(s) ..., 0 B:" with
    nothing under its colon."""
    finished_run(tmp_path, "first", lr=0.25)
    finished_run(tmp_path, "twin", lr=0.25)

    out = deleted(tmp_path, "twin", capsys)

    assert "  stage folders no other run uses: none" in out
    assert not any(line.endswith(":") and "0 stage folder" in line for line in out.splitlines()), out
    assert "kept: stages/" in out and "(used by first)" in out
    assert not any(line.startswith("    stages/") for line in out.splitlines())
