"""`relay generations MLFLOW_RUN_ID`: the id `relay run` prints for the MLflow UI (`open run d461...`) names its run,
and so do its first 8 characters or more (what MLflow's UI shows), as git takes a hash's: one a runs of several Relay
runs share, or none has, is refused saying what to pass."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import relay
from orchestrator.cli import main
from orchestrator.tracking.common import mlflow_client
from tests.unit.orchestrator.cli.test_generations import TOY, tracked
from tests.unit.orchestrator.cli.test_generations_sweep_run import sweep_with_trials


def mlflow_run_id(workspace: Path, kind: str, relay_run: str | None = None) -> str:
    """The MLflow id of the workspace's run tagged `relay.kind` KIND (pipeline, generation, stage), of ``relay_run``
    when the workspace holds several."""
    client = mlflow_client(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("relay").experiment_id
    of_run = f" and tags.`relay.pipeline_run` = '{relay_run}'" if relay_run else ""
    [run] = client.search_runs([experiment], f"tags.`relay.kind` = '{kind}'{of_run}")
    return run.info.run_id


@pytest.mark.parametrize("kind", ["pipeline", "stage"])
def test_an_mlflow_run_id_shows_the_relay_run_it_belongs_to(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings, kind: str
) -> None:
    """It said `no run 'd461...' in the artifact store`: the MLflow run's `relay.pipeline_run` tag names the run."""
    tracked(tmp_path, "toy-20261205-070000-ab12", {"pipeline": "toy", "name": "toy"})
    mlflow_id = mlflow_run_id(tmp_path, kind)
    assert main(["generations", mlflow_id, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    output = capsys.readouterr().out
    assert "Run toy-20261205-070000-ab12:" in output and "0.7500" in output


def test_an_mlflow_run_id_the_store_does_not_know_says_to_pass_the_relay_run_id(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    tracked(tmp_path, "run-known", {"pipeline": "toy", "name": "toy"})
    unknown = "0" * 32
    assert main(["generations", unknown, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert f"no run {unknown!r} in the artifact store" in err
    assert "looks like an MLflow run id, which the tracking store here does not know: pass the Relay run id" in err
    empty = tmp_path / "empty"
    assert main(["generations", unknown, "--workspace", str(empty)], pipelines={"toy": TOY}) == 2
    assert not empty.exists()  # asking MLflow about the id made no tracking database


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes: a refused command must leave them as they were."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@contextmanager
def run_ids_starting(monkeypatch: pytest.MonkeyPatch, prefix: str) -> Iterator[None]:
    """MLflow's SQLite store gives every run it creates meanwhile an id starting with ``prefix`` (the rest random,
    so unique): ids that share their first 8 characters, which real ids do about once in 4 billion pairs."""
    made = uuid.uuid4
    with monkeypatch.context() as patched:
        patched.setattr(uuid, "uuid4", lambda: uuid.UUID(hex=prefix + made().hex[len(prefix) :]))
        yield


@pytest.mark.parametrize("kind", ["pipeline", "generation", "stage"])
def test_the_first_8_characters_of_an_mlflow_run_id_show_the_relay_run_it_belongs_to(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings, kind: str
) -> None:
    """MLflow's UI shows a run id's first 8 characters; given to `relay generations` they found no run."""
    tracked(tmp_path, "toy-20261205-070000-ab12", {"pipeline": "toy", "name": "toy"})
    short = mlflow_run_id(tmp_path, kind)[:8]
    assert main(["generations", short, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    output = capsys.readouterr().out
    assert "Run toy-20261205-070000-ab12:" in output and "0.7500" in output


def test_a_prefix_the_runs_of_one_relay_run_share_names_that_run(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pipeline run and its generation read the same table: nothing is ambiguous about which to show."""
    with run_ids_starting(monkeypatch, "cafe0123"):
        tracked(tmp_path, "run-one", {"pipeline": "toy", "name": "toy"})
    assert main(["generations", "cafe0123", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    assert "Run run-one:" in capsys.readouterr().out


def test_a_prefix_of_runs_of_two_relay_runs_is_refused_naming_them_and_a_longer_one_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_ids_starting(monkeypatch, "cafe0123"):
        tracked(tmp_path, "run-one", {"pipeline": "toy", "name": "toy"})
        tracked(tmp_path, "run-two", {"pipeline": "toy", "name": "toy"})
    before = files_of(tmp_path)
    assert main(["generations", "cafe0123", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert "run_id: cafe0123 starts the ids of MLflow runs of 2 different runs in the tracking store" in err
    for relay_run in ("run-one", "run-two"):
        ids = ", ".join(mlflow_run_id(tmp_path, kind, relay_run) for kind in ("pipeline", "generation", "stage"))
        assert f"Relay run {relay_run} (" in err and all(one in err for one in ids.split(", "))
    assert "pass more characters of the MLflow run id" in err and "or the Relay run id (`relay runs --workspace" in err
    assert files_of(tmp_path) == before  # nothing written

    longer = mlflow_run_id(tmp_path, "pipeline", "run-two")[:12]
    assert main(["generations", longer, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    assert "Run run-two:" in capsys.readouterr().out


def test_a_prefix_no_mlflow_run_id_starts_with_is_refused_saying_what_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    tracked(tmp_path, "run-known", {"pipeline": "toy", "name": "toy"})
    unknown = next(p for p in ("00000000", "11111111") if not mlflow_run_id(tmp_path, "pipeline").startswith(p))
    before = files_of(tmp_path)
    assert main(["generations", unknown, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert f"run_id: no run '{unknown}' in the artifact store, and no MLflow run in the tracking store" in err
    assert "has an id starting with it; pass the Relay run id (`relay runs --workspace" in err
    assert "whole or its first 8 characters or more" in err
    assert err.count("run_id:") == 1
    assert files_of(tmp_path) == before


def test_a_relay_run_whose_id_looks_like_a_prefix_is_that_run(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    """`--run-id deadbeef` is a Relay run's id: a run tracked with no record here is still found by it."""
    tracked(tmp_path, "deadbeef", {"pipeline": "toy", "name": "toy"})
    assert main(["generations", "deadbeef", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 0
    assert "Run deadbeef:" in capsys.readouterr().out


def test_an_mlflow_run_of_no_relay_run_is_refused_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    tracked(tmp_path, "run-known", {"pipeline": "toy", "name": "toy"})
    client = mlflow_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    other = client.create_run(client.create_experiment("notebooks"), run_name="by-hand").info.run_id
    for given in (other, other[:8]):
        assert main(["generations", given, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
        err = capsys.readouterr().err
        assert f"run_id: {given} is MLflow run {other} (by-hand), which no Relay run made" in err


def test_a_prefix_of_a_sweeps_mlflow_run_names_the_sweep_and_its_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    sweep_id = sweep_with_trials(tmp_path, ["toy-sweep-a_00000"], best="toy-sweep-a_00000")
    assert main(["generations", sweep_id[:8], "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert f"run_id: {sweep_id} is the MLflow run of sweep 'toy-sweep' (relay tune)" in err
    assert "relay generations toy-sweep-a_00000" in err


def test_the_python_api_takes_a_prefix_as_the_command_does(tmp_path: Path, no_store_settings) -> None:
    tracked(tmp_path, "run-api", {"pipeline": "toy", "name": "toy"})
    rows = relay.generations(mlflow_run_id(tmp_path, "generation")[:8], workspace=tmp_path)
    assert [row["evaluate/accuracy"] for row in rows] == [0.75]
