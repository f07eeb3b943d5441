"""The job commands (`relay submit/jobs/status/logs`) against a real token-auth head: bad input is exit 2, said plainly.

Before the fix, on a real cluster: a missing or wrong token exited 1 on the job commands (2 on
`relay run --address`, and in the README's table); RAY_AUTH_TOKEN_PATH naming no file read as "no
token found"; the GCS port given as the Jobs address read "no Ray Jobs server ...: is the cluster
up?" while it was; and `relay submit --run-id ID` where the cluster already had a job ID uploaded
the project first, then exited 1. Each case is the real CLI in its own process, as a user with a
fresh HOME, against one real `ray start --head` (token auth, dashboard on its own port).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import RayCluster, token_head
from tests.integration.cluster import durable_folder, user_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = "pipelines/configs/smoke.yaml"
CLI_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> Iterator[RayCluster]:
    """A real `ray start --head` with token auth (no CPUs), its own ports, HOME and temp dir; stopped after the module."""
    with token_head(tmp_path_factory.mktemp("jobs-head")) as cluster:
        yield cluster


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A workspace outside the temporary folders (a submit refuses /tmp), never created by a refused submit."""
    with durable_folder("jobs-input") as path:
        yield path


def token_of(head: RayCluster) -> str:
    return (Path(head.env["HOME"]) / ".ray" / "auth_token").read_text().strip()


def relay(*args: str, home: Path, workspace: Path, **extra: str) -> subprocess.CompletedProcess:
    """The real CLI as a user with a fresh HOME (no token file), durable stores in ``workspace``."""
    env = {**user_env(home), "RELAY_WORKSPACE": str(workspace), **extra}
    env = {key: value for key, value in env.items() if key not in ("RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def assert_refused(done: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with one message (one `relay: ` line, log lines aside) holding ``words``."""
    said = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 2, said
    for word in words:
        assert word in done.stderr, f"{word!r} not in {said}"
    assert [line.startswith("relay: ") for line in done.stderr.splitlines()].count(True) == 1, said


def test_a_missing_or_wrong_token_is_bad_input_on_every_job_command(
    head: RayCluster, tmp_path: Path, workspace: Path
) -> None:
    address = ["--address", head.dashboard]
    commands = [["submit", SMOKE, *address], ["jobs", *address], ["status", "r1", *address], ["logs", "r1", *address]]
    for command in commands:
        done = relay(*command, home=tmp_path, workspace=workspace)
        assert_refused(done, "requires a token and none was found", "RAY_AUTH_TOKEN")
    for command in commands[:2]:
        done = relay(*command, home=tmp_path, workspace=workspace, RAY_AUTH_TOKEN="wrongtoken")
        assert_refused(done, "rejected the token")
    assert not workspace.exists(), "nothing written"


def test_a_token_path_that_names_no_file_is_named(head: RayCluster, tmp_path: Path, workspace: Path) -> None:
    missing = tmp_path / "nonexistent"
    done = relay(
        "jobs", "--address", head.dashboard, home=tmp_path, workspace=workspace, RAY_AUTH_TOKEN_PATH=str(missing)
    )
    assert_refused(done, f"RAY_AUTH_TOKEN_PATH names {missing}, which does not exist")


def test_the_gcs_address_given_to_the_job_commands_is_named_with_the_dashboard(
    head: RayCluster, tmp_path: Path, workspace: Path
) -> None:
    gcs_url = f"http://{head.gcs}"
    token = token_of(head)
    cases = [
        (["jobs", "--address", gcs_url], {}),
        (["jobs"], {"RAY_ADDRESS": head.gcs}),
        (["submit", SMOKE, "--address", gcs_url], {}),
    ]
    for command, extra in cases:
        done = relay(*command, home=tmp_path, workspace=workspace, RAY_AUTH_TOKEN=token, **extra)
        assert_refused(done, f"{gcs_url} is the Ray cluster's GCS address", f"dashboard is at {head.dashboard}")
        assert "is the cluster up" not in done.stderr
    done = relay("jobs", "--address", gcs_url, home=tmp_path, workspace=workspace)  # no token: still told apart
    assert_refused(done, f"{gcs_url} is the Ray cluster's GCS address", "8265")
    assert not workspace.exists(), "nothing written"


def test_a_run_id_the_cluster_has_a_job_for_is_refused_before_the_upload(
    head: RayCluster, tmp_path: Path, workspace: Path
) -> None:
    from ray.job_submission import JobSubmissionClient

    token = token_of(head)
    client = JobSubmissionClient(head.dashboard, headers={"Authorization": f"Bearer {token}"})
    taken = f"taken-{uuid.uuid4().hex[:8]}"
    client.submit_job(entrypoint="true", submission_id=taken)
    before = len(client.list_jobs())
    done = relay(
        "submit", SMOKE, "--run-id", taken, "--address", head.dashboard, "--skip-resource-check",
        home=tmp_path, workspace=workspace, RAY_AUTH_TOKEN=token,
    )  # fmt: skip
    assert_refused(done, f"already has a job {taken!r}", "--run-id")
    assert "Uploading package" not in done.stderr and "skipping upload" not in done.stderr, done.stderr[-3000:]
    assert len(client.list_jobs()) == before, "nothing submitted"
    assert not workspace.exists(), "nothing written"
