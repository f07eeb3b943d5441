"""`relay submit` of a config file the upload does not hold, on a real token-auth Ray cluster: the job runs that file.

Before the fix, on a real Ray 2.60 head: `relay submit ../cfg/smoke.yaml` (outside the folder the job
uploads) and `relay submit $PWD/relay-workspace/tune/s/best.yaml` (what a sweep's best.yaml header
names; the upload leaves relay-workspace/ out) printed a job id, exit 0, and the job failed on the
cluster with "file not found: ... (looked in .../working_dir_files/_ray_pkg_...)". Now the file's text
travels with the job, which writes it to a file of its own and runs it. Also: with RAY_AUTH_TOKEN set and
RAY_AUTH_MODE=disabled, a token cluster's refusal asked to set RAY_AUTH_TOKEN. Each command is the real
CLI in its own process, as a user with a fresh HOME, against a real `ray start --head` with one worker node.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.cluster.cluster import RayCluster, token_head
from tests.integration.cluster import durable_folder, user_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CLI_TIMEOUT_S = 600
# Outside the project: a few seconds of training on two CPUs; its name tells the run that ran it apart.
TINY = """# a config outside the project folder
pipeline: crest
name: shipped
seed: 0
data: {name: digits, head_count: 60, imbalance_ratio: 10, labeled_fraction: 0.2, holdout_per_class: 10}
model: {name: small_cnn}
train: {steps: 2, batch_size: 16, unlabeled_ratio: 1, report_every: 2}
crest: {generations: 1}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[RayCluster]:
    """A real token-auth `ray start --head` (no CPUs) and one 2-CPU worker node; stopped after the module."""
    with token_head(tmp_path_factory.mktemp("ship-head")) as head:
        head.start_worker("node_a")
        head.wait_until_nodes(2)
        yield head


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A workspace outside the temporary folders (a submit refuses /tmp) and outside the project."""
    with durable_folder("submit-config") as path:
        yield path


def token_of(head: RayCluster) -> str:
    return (Path(head.env["HOME"]) / ".ray" / "auth_token").read_text().strip()


def relay(*args: str, cwd: Path, home: Path, **extra: str) -> subprocess.CompletedProcess:
    """The real CLI in ``cwd`` as a user with a fresh HOME and no store settings but ``extra``'s."""
    stores = ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI")
    env = {**{key: value for key, value in user_env(home).items() if key not in stores}, **extra}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


@pytest.mark.parametrize("where", ["../cfg/tiny.yaml", "relay-workspace/tune/s/best.yaml"])
def test_a_config_outside_the_upload_is_the_one_the_job_runs(
    cluster: RayCluster, tmp_path: Path, workspace: Path, where: str
) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "note.txt").write_text("the code the job uploads\n")
    config = (project / where).resolve()
    config.parent.mkdir(parents=True)
    config.write_text(TINY)
    done = relay(
        "submit", where, "--address", cluster.dashboard, "--wait",
        cwd=project, home=tmp_path, RAY_AUTH_TOKEN=token_of(cluster), RELAY_WORKSPACE=str(workspace),
    )  # fmt: skip
    said = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, said
    assert "its text is sent with the job" in done.stderr, said
    run_id = done.stdout.splitlines()[0].strip()
    assert run_id.startswith("shipped-"), said
    ledger = json.loads((workspace / "artifacts" / "runs" / run_id / "ledger.json").read_text())
    assert ledger["status"] == "FINISHED", ledger
    assert_recorded_as_the_users_file(workspace, run_id, os.path.normpath(project.resolve() / where))


def assert_recorded_as_the_users_file(workspace: Path, run_id: str, users_file: str) -> None:
    """The run's record and its MLflow run name the file the user submitted, not the job's /tmp copy of it.

    Before: both named /tmp/relay-config.XXXXXX/NAME (what the job wrote the text to and ran).
    """
    command = json.loads((workspace / "artifacts" / "runs" / run_id / "command.json").read_text())
    assert command["config"] == users_file, command
    assert command["config_sent_from"] == socket.gethostname(), command
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    [parent] = client.search_runs(
        experiments, f"tags.`relay.pipeline_run` = '{run_id}' and tags.`relay.kind` = 'pipeline'"
    )
    assert parent.data.tags["mlflow.source.name"] == users_file, parent.data.tags
    assert f"`relay run {users_file}`" in parent.data.tags["mlflow.note.content"], parent.data.tags


def test_a_token_kept_back_by_auth_mode_disabled_names_the_mode(cluster: RayCluster, tmp_path: Path) -> None:
    done = relay(
        "jobs", "--address", cluster.dashboard,
        cwd=tmp_path, home=tmp_path, RAY_AUTH_TOKEN=token_of(cluster), RAY_AUTH_MODE="disabled",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "RAY_AUTH_MODE=disabled keeps the one in $RAY_AUTH_TOKEN from being sent: unset RAY_AUTH_MODE" in done.stderr
    assert "none was found" not in done.stderr
