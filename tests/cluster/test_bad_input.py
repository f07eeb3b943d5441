"""Bad settings for a cluster run: one clear message each, exit 2 (a setting to fix) or 1 (the cluster failed).

Each case is `relay submit` (or `relay run`) from the user's shell, run in this process: the
checks happen before anything is imported from Ray or written anywhere, so nothing reaches
the cluster (its job list does not grow) and nothing lands in the store.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import jobs
from orchestrator.cli import main
from tests.cluster.conftest import Stack
from tests.cluster.helpers import store_keys
from tests.integration.cluster import AUTH_VARS

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(600)]

SMOKE = "pipelines/configs/smoke.yaml"


@pytest.fixture
def dead() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` where nothing answers: the port is bound, never listened on, held for the test.

    A port merely free when the tests are collected could be taken by then (a server of the stack).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))  # no listen(): a connection is refused
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def cases(stack: Stack, dead: str) -> list[tuple[str, dict[str, str | None], list[str], int, list[str]]]:
    """(what, environment changes, command, exit code, words the message must hold); ``dead``: nothing answers."""
    submit = ["submit", SMOKE, "--address", stack.cluster.dashboard]
    return [
        (
            "no durable storage",
            {"RELAY_ARTIFACT_URI": None, "MLFLOW_TRACKING_URI": None},
            submit,
            2,
            ["run.artifact_uri", "tracking.uri", "a relative path", "RELAY_WORKSPACE", "s3://"],
        ),
        (
            "a temporary workspace",
            {"RELAY_ARTIFACT_URI": None, "MLFLOW_TRACKING_URI": None, "RELAY_WORKSPACE": "/tmp/relay-ws"},
            submit,
            2,
            ["/tmp/relay-ws/artifacts", "a temporary folder", "RELAY_WORKSPACE"],
        ),
        ("an unknown scheme", {"RELAY_ARTIFACT_URI": "nosuch://bucket/relay"}, submit, 2, ["pyarrow cannot open"]),
        ("an S3 endpoint that does not answer", {"AWS_ENDPOINT_URL": dead}, submit, 2, ["does not answer"]),
        ("a missing bucket", {"RELAY_ARTIFACT_URI": "s3://no-such-bucket/relay"}, submit, 2, ["does not exist"]),
        ("a tracking server that does not answer", {"MLFLOW_TRACKING_URI": dead}, submit, 2, ["no MLflow"]),
        (
            "an address that is not a Ray dashboard",
            {},
            ["submit", SMOKE, "--address", stack.mlflow.url],
            2,
            ["not as a Ray dashboard", "8265"],
        ),
        ("an address where nothing answers", {}, ["submit", SMOKE, "--address", dead], 2, ["no Ray Jobs server"]),
        (
            "a GPU stage on a cluster without GPUs",
            {},
            ["submit", SMOKE, "resources.train.num_gpus=1", "--address", stack.cluster.dashboard],
            2,
            ["has 0 GPU, the pipeline asks for 1 GPU at once"],
        ),
        (
            "the status of a job the cluster never ran",
            {},
            ["status", "raysubmit_nope", "--address", stack.cluster.dashboard],
            2,
            ["no job 'raysubmit_nope'", "relay jobs --address"],
        ),
        (
            "the log of an unknown job",
            {},
            ["logs", "raysubmit_nope", "--address", stack.cluster.dashboard],
            2,
            ["no job"],
        ),
        (
            "a dashboard URL given to relay run",
            {},
            ["run", SMOKE, "--address", stack.cluster.dashboard],
            2,
            ["GCS address", "relay submit"],
        ),
    ]


def test_each_bad_setting_is_one_clear_message_and_nothing_is_submitted_or_written(
    stack: Stack, dead: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    store = stack.store("bad-input")
    token = (Path(stack.env["HOME"]) / ".ray" / "auth_token").read_text().strip()
    for name in AUTH_VARS:
        monkeypatch.setenv(name, "placeholder")  # so that teardown removes what jobs sets
        monkeypatch.delenv(name)
    base = stack.laptop(store, RAY_AUTH_TOKEN=token)
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    jobs_before = len(jobs.list_jobs(stack.cluster.dashboard))
    every_case = cases(stack, dead)
    changed = {key for _, changes, *_ in every_case for key in changes}
    for what, changes, command, code, words in every_case:
        for key in changed:
            monkeypatch.delenv(key, raising=False)
        for key, value in {**base, **changes}.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        assert main(command) == code, what
        message = capsys.readouterr().err
        for word in words:
            assert word in message, f"{what}: {word!r} not in {message}"
        assert message.count("relay: ") == 1, f"{what}: one message, not a traceback: {message}"
    assert len(jobs.list_jobs(stack.cluster.dashboard)) == jobs_before
    assert store_keys(stack, store) == []
