"""Cluster runs must write where results outlive the cluster; refused with exit 2 and the setting to add, before any write.

The stores are resolved as the job would resolve them; these checks need no cluster (the
refusal comes before `relay submit` connects). tests/cluster runs the same refusals against a
live cluster and checks that nothing was submitted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.run_locations import (
    RAY_JOB_ENV,
    Locations,
    durability_problems,
    impermanence,
    local_path,
    store_problem,
    tracking_problem,
)
from tests.integration.cluster import free_port

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"
SESSION = "/tmp/ray/session_2026-12-01_10-00-00_000000_42/runtime_resources/working_dir_files/_ray_pkg_ab/ws"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("relay-workspace", "a relative path"),
        ("/tmp/relay", "a temporary folder"),
        ("/var/tmp/relay/artifacts", "a temporary folder"),
        ("/data/ray/session_2026-12-01_10-00-00_000000_42/x", "Ray's per-session folder"),
        (SESSION, "Ray's per-session folder"),
        ("/mnt/relay", None),
        ("/home/me/relay-workspace", None),
        ("~/relay-workspace", None),  # a home folder, which the job expands on the cluster; was "relative"
        ("~me/relay-workspace", None),
    ],
)
def test_where_results_would_not_outlive_the_cluster(path: str, why: str | None) -> None:
    found = impermanence(path)
    assert found is None if why is None else why in found


def test_remote_stores_are_durable_and_local_uris_are_read_as_paths() -> None:
    assert local_path("sqlite:////mnt/relay/mlflow.db") == "/mnt/relay/mlflow.db"
    assert local_path("file:///mnt/relay/artifacts") == "/mnt/relay/artifacts"
    assert local_path("s3://bucket/relay") is None and local_path("http://mlflow:5000") is None
    assert durability_problems(Locations("s3://bucket/relay", "http://mlflow:5000")) == []


def test_each_store_is_named_with_the_setting_to_add() -> None:
    problems = durability_problems(Locations("/tmp/ws/artifacts", "sqlite:///tmp/ws/mlflow.db"))
    assert [p.split(":")[0] for p in problems] == ["run.artifact_uri", "tracking.uri"]
    assert "RELAY_WORKSPACE" in problems[0] and "s3://BUCKET/PREFIX" in problems[0]
    assert "tracking.uri=http://MLFLOW-SERVER:5000" in problems[1]


def test_an_unknown_scheme_and_a_dead_tracking_server_are_named() -> None:
    assert "pyarrow cannot open" in store_problem("nosuch://bucket/relay")
    dead = f"http://127.0.0.1:{free_port()}"
    assert f"no MLflow tracking server answers at {dead}" in tracking_problem(dead)
    assert tracking_problem("sqlite:////mnt/relay/mlflow.db") is None


def test_submit_without_durable_storage_exits_2_before_connecting(
    monkeypatch, capsys, tmp_path, no_store_settings
) -> None:
    monkeypatch.chdir(tmp_path)
    nothing_listens = f"http://127.0.0.1:{free_port()}"  # never reached: the refusal comes first
    assert main(["submit", str(SMOKE), "--address", nothing_listens]) == 2
    err = capsys.readouterr().err
    assert "run.artifact_uri" in err and "tracking.uri" in err and "a relative path" in err
    assert "no Ray Jobs server" not in err and list(tmp_path.iterdir()) == []


def test_relay_run_inside_a_ray_job_refuses_a_temporary_workspace(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv(RAY_JOB_ENV, "{}")  # what Ray's job supervisor sets for the entrypoint
    for name in ("RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    workspace = tmp_path / "ws"  # pytest's tmp_path is under the temporary folder
    assert main(["run", str(SMOKE), f"run.workspace={workspace}", "run.executor=local"]) == 2
    assert "a temporary folder" in capsys.readouterr().err
    assert not workspace.exists()
