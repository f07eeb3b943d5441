"""Cluster runs must write where results outlive the cluster; refused with exit 2 and the setting to add, before any write.

The stores are resolved as the job would resolve them; these checks need no cluster (the
refusal comes before `relay submit` connects). tests/cluster runs the same refusals against a
live cluster and checks that nothing was submitted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main, temporary
from orchestrator.cli.run.cluster_join import cluster_to_join
from orchestrator.cli.run.run_locations import (
    RAY_JOB_ENV,
    Locations,
    durability_problems,
    in_ray_job,
    local_path,
    store_problem,
    tracking_problem,
)
from orchestrator.cli.temporary import impermanence
from orchestrator.config import RunSettings
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
        ("/data/ray/session_latest/relay", "Ray's per-session folder"),  # Ray's link to the newest session
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


PER_SESSION = "would be inside Ray's per-session folder (deleted with the session)"
SESSION_NAME = "session_2026-12-06_12-14-00_000000_1"


def ray_temp_dir(folder: Path) -> Path:
    """What `ray start --temp-dir FOLDER` leaves: a session folder, and session_latest linked to it."""
    (folder / SESSION_NAME).mkdir(parents=True)
    (folder / "session_latest").symlink_to(SESSION_NAME)
    return folder


@pytest.fixture
def no_temp_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest's tmp_path is under /tmp: with no temporary roots, only the session folder and links decide."""
    monkeypatch.setattr(temporary, "temp_roots", list)


def test_session_latest_is_refused_as_the_session_it_names(tmp_path: Path, no_temp_roots) -> None:
    """`session_latest/relay` was accepted while `session_<date>.../relay` was refused: the same folder."""
    ray = ray_temp_dir(tmp_path / "ray2")
    by_name, by_link = str(ray / SESSION_NAME / "relay"), str(ray / "session_latest" / "relay")
    assert impermanence(by_name) == impermanence(by_link) == PER_SESSION.removeprefix("would be ")
    assert impermanence("/nowhere/ray/session_latest") == PER_SESSION.removeprefix("would be ")  # not here: its name


def test_a_symlink_into_a_session_or_temporary_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(temporary, "temp_roots", lambda: [str(scratch)])
    ray = ray_temp_dir(tmp_path / "ray2")
    (tmp_path / "results").symlink_to(ray / "session_latest")
    (tmp_path / "shared").symlink_to(scratch)
    (tmp_path / "durable").mkdir()
    into_session = impermanence(str(tmp_path / "results" / "relay"))
    assert into_session is not None and into_session.startswith(PER_SESSION.removeprefix("would be "))
    assert f"it resolves to {ray / SESSION_NAME / 'relay'}" in into_session
    into_scratch = impermanence(str(tmp_path / "shared" / "relay" / "artifacts"))
    assert into_scratch is not None and into_scratch.startswith(f"under {scratch}, a temporary folder")
    assert impermanence(str(tmp_path / "durable" / "relay")) is None


def test_submit_refuses_an_artifact_uri_through_session_latest(
    monkeypatch, capsys, tmp_path, no_store_settings, no_temp_roots
) -> None:
    """The QA case: `relay submit --artifact-uri DIR/session_latest/relay` was accepted, and the run's outputs
    went into Ray's session folder, deleted with the session."""
    monkeypatch.chdir(tmp_path)
    store = ray_temp_dir(tmp_path / "ray2") / "session_latest" / "relay"
    nothing_listens = f"http://127.0.0.1:{free_port()}"  # never reached: the refusal comes first
    command = ["submit", str(SMOKE), "--address", nothing_listens, "--artifact-uri", str(store)]
    assert main([*command, "run.workspace=/mnt/relay"]) == 2
    err = capsys.readouterr().err
    assert f"--artifact-uri: the artifact store (stage outputs, run records) {store} {PER_SESSION}" in err, err
    assert "no Ray Jobs server" not in err and not store.exists()


@pytest.mark.parametrize(("root", "cleared"), [("/var/tmp", False), ("/tmp", True), ("/dev/shm", True)])
def test_a_temporary_folder_is_described_truthfully(root: str, cleared: bool) -> None:
    """/var/tmp was said to be "cleared on reboot", which most systems keep it through; it is still refused."""
    why = impermanence(f"{root}/relay")
    assert why is not None and why.startswith(f"under {root}, a temporary folder")
    assert ("cleared on reboot" in why) is cleared
    assert cleared or ("the system may clean" in why and "not shared between nodes" in why)


def test_unreachable_stores_are_named_by_the_setting_the_user_gave(
    monkeypatch, capsys, tmp_path, no_store_settings, s3_endpoint, s3
) -> None:
    """`--artifact-uri s3://nosuch/x` was reported as `run.artifact_uri: the bucket ...`, a dead
    MLFLOW_TRACKING_URI as `tracking.uri: ...`: settings the user never used."""
    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    missing = f"s3://nosuch-qa5/x?endpoint_override={s3_endpoint}&scheme=http"
    command = ["submit", str(SMOKE), "--address", dead, "--artifact-uri", missing, "run.workspace=/mnt/relay"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"--artifact-uri: the bucket 'nosuch-qa5' of {missing} does not exist" in err, err
    assert f"$MLFLOW_TRACKING_URI: no MLflow tracking server answers at {dead}" in err, err
    assert "or fix $MLFLOW_TRACKING_URI" in err and "run.artifact_uri" not in err and "tracking.uri:" not in err


def test_relay_run_names_the_variable_that_chose_an_unreachable_store(
    monkeypatch, capsys, tmp_path, no_store_settings
) -> None:
    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    assert main(["run", str(SMOKE), "run.executor=local", f"run.workspace={tmp_path / 'ws'}"]) == 2
    err = capsys.readouterr().err
    assert f"$MLFLOW_TRACKING_URI: no MLflow tracking server answers at {dead}" in err, err
    assert not (tmp_path / "ws").exists()


def test_the_config_key_still_names_a_server_set_in_the_config() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    problem = tracking_problem(dead)
    assert problem.startswith("tracking.uri: ") and problem.endswith("or fix tracking.uri / MLFLOW_TRACKING_URI")


def test_relay_tune_names_the_variable_that_chose_an_unreachable_store(
    monkeypatch, capsys, tmp_path, no_store_settings
) -> None:
    """As `relay run` and `relay submit` do: the sweep's check said `tracking.uri:`, a key the user never set."""
    monkeypatch.chdir(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    assert main(["tune", str(SMOKE), f"run.workspace={tmp_path / 'ws'}", "--output", str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err
    assert f"$MLFLOW_TRACKING_URI: no MLflow tracking server answers at {dead}" in err, err
    assert not (tmp_path / "ws").exists() and not (tmp_path / "sweep").exists()


def test_a_deleted_working_folder_is_not_a_ray_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """os.getcwd() raises FileNotFoundError in a deleted folder: asking whether this process is a Ray job's entrypoint
    crashed with a bare ENOENT naming no path. Ray's job variable still says so where it is one."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    monkeypatch.delenv(RAY_JOB_ENV, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert in_ray_job() is False
    assert cluster_to_join(None, RunSettings(ray_address="127.0.0.1:6379")) == ("127.0.0.1:6379", "run.ray_address")
    monkeypatch.setenv(RAY_JOB_ENV, "{}")  # what Ray's job supervisor sets for the entrypoint
    assert in_ray_job() is True
