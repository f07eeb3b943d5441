"""An S3 store that goes away mid-write, or refuses the credentials, against a real moto server.

Before the fixes: an import whose store stopped answering exited 2 ("bad input") with the raw AWS
error; a run whose store went away during a stage ended on the ledger's write error, not the
stage's; ACCESS_DENIED was called "does not answer". The store fails deterministically: the
source (or the stage) stops the in-process moto server itself, after the first shard (or output)
was written, and a new server on the same port brings the same buckets back (moto keeps them in
the process).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from moto.server import ThreadedMotoServer

from orchestrator.cli import main
from orchestrator.cli.run.run_locations import store_problem
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner, RunStatus
from orchestrator.errors import StageError
from pipelines.datasets import imports
from tests.unit.orchestrator.engine.toy import RecordingTracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


class Moto:
    """moto's S3 server in this process, on one port for the test: ``stop`` it, then ``start`` it again."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server: ThreadedMotoServer | None = None
        self.start()

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def uri(self, path: str) -> str:
        return f"s3://{path}?endpoint_override=127.0.0.1:{self.port}&scheme=http"


MOTO: Moto | None = None  # the server the stage body below stops (a stage function is module-level)


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[Moto]:
    global MOTO
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    MOTO = Moto()
    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{MOTO.port}", scheme="http", allow_bucket_creation=True)
    fs.create_dir("bucket")
    yield MOTO
    MOTO.stop()
    MOTO = None


def _dying_source(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Register source ``dying``: 4 chunks of 64 images; the first import stops the server before its second
    chunk, once the first (one shard of 64 rows at --rows-per-group 1) is in the bucket. Returns its attempts."""
    attempts: list[int] = []

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(0)
        for i in range(4):
            if i == 1 and len(attempts) == 1:
                moto.stop()
            yield rng.integers(0, 256, (64, 1, 4, 4), dtype=np.uint8), np.arange(64) % 2

    def open_(folder: Path | None, options: object) -> imports.SourceData:
        attempts.append(1)
        return imports.SourceData(["a", "b"], (1, 4, 4), {"train": (256, chunks)})

    monkeypatch.setitem(imports.SOURCES, "dying", imports.Source("dying", "stops the store", open_))
    return attempts


def test_an_import_whose_store_stops_answering_exits_1_saying_what_is_left_and_how_to_restart(
    moto: Moto, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Before the fix: exit 2 ("bad input") with the raw AWS error, and the shards left in the bucket unmentioned."""
    _dying_source(moto, monkeypatch)
    dest = moto.uri("bucket/ds")
    assert main(["data", "import", "dying", dest, "--rows-per-group", "1"]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"relay: {dest}: the import failed because the store stopped answering ("), err
    assert "NETWORK_CONNECTION" in last and "problem(s)" not in err
    assert f"{dest} may still hold shard files of it and no manifest" in last
    assert last.endswith(f"start it again with: relay data import dying '{dest}' --rows-per-group 1"), last

    moto.start()  # the store answers again: what the message said holds
    assert main(["data", "info", dest]) == 2
    assert "an unfinished import" in capsys.readouterr().err
    assert main(["data", "import", "dying", dest, "--rows-per-group", "1"]) == 0
    out = capsys.readouterr().out
    assert "held what an unfinished import left (1 shard file(s)" in out and "256 images" in out


def make_table(ctx, inputs, params):
    return StageResult(outputs={"data": pa.table({"x": [1.0, 2.0]})})


def stops_the_store(ctx, inputs, params):
    """The stage's work is done; the store goes away before its output is written (first attempt only)."""
    if params["stop"] and MOTO is not None and MOTO.server is not None:
        MOTO.stop()
    return StageResult(outputs={"model": {"w": 1.0}})


def _pipeline(stop: bool) -> Pipeline:
    return Pipeline(
        "p",
        [
            Stage("data", make_table, (), ("data",)),
            Stage("g00/train", stops_the_store, ("data",), ("model",), params={"stop": stop}, generation=0),
        ],
    )


def test_a_store_gone_mid_run_fails_naming_the_stage_and_how_to_resume(moto: Moto) -> None:
    """Before the fix: the run's last line named the ledger's write, and said "check the store is writable"."""
    store = ArtifactStore(moto.uri("bucket/relay"))
    runner = Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0, store_option=" --artifact-uri X")
    with pytest.raises(StageError) as info:
        runner.run(_pipeline(stop=True), "run-1")
    message = str(info.value)
    assert message.startswith("stage 'g00/train' failed after 1 attempt(s): ArtifactError:"), message
    assert "does not answer from this machine" in message and "writable" not in message
    assert "the run record (runs/run-1/ledger.json) could not be updated either" in message
    assert "once the store answers, `relay resume run-1 --artifact-uri X` continues it" in message

    moto.start()
    runner = Runner(ArtifactStore(moto.uri("bucket/relay")), LocalExecutor(), RecordingTracker(), "v1", 0)
    assert runner.run(_pipeline(stop=False), "run-1").status is RunStatus.FINISHED


@pytest.fixture
def checking_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server in its own process with IAM checks on (INITIAL_NO_AUTH_ACTION_COUNT=0): every request is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        for name, value in (("AWS_ACCESS_KEY_ID", "bad"), ("AWS_SECRET_ACCESS_KEY", "bad")):
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_refused_credentials_are_called_so_by_the_run_and_the_import(
    checking_moto: str, capsys: pytest.CaptureFixture
) -> None:
    """Before the fix: ACCESS_DENIED read "does not answer from this machine" (relay run) and "cannot reach" (relay
    data)."""
    uri = f"s3://bucket/relay?endpoint_override={checking_moto}&scheme=http"
    problem = store_problem(uri)
    assert problem is not None and problem.startswith(f"run.artifact_uri: access to the store {uri} was denied ("), (
        problem
    )
    assert "ACCESS_DENIED" in problem and "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in problem
    assert "does not answer" not in problem

    assert main(["data", "import", "digits", uri]) == 2
    err = capsys.readouterr().err
    assert f"access to the store {uri} was denied" in err and "fix them" in err, err
    assert "cannot reach" not in err and "import train" not in err
