"""An S3 store that stops answering (its server paused with SIGSTOP), against a real moto server in its own process.

Before the fix: with pyarrow's S3 timeouts unset, a write to a paused server waited until the server
answered again: a run sat silent for minutes, shown RUNNING. Now a request is retried and then given up
on within ``orchestrator.engine.filesystems``' bound. Its shipped values (30 s without a byte, 3
attempts: about 90 s per request) are shortened here to seconds so a run of this file takes well
under a minute; a thread guard far above the bound tells a hang from a slow failure, and the paused
server is always resumed and stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.engine import filesystems, run_state
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.ledger import Ledger
from orchestrator.engine.runner import Runner, RunStatus
from orchestrator.errors import ArtifactError, StageError
from tests.unit.orchestrator.engine.toy import RecordingTracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
GUARD_S = 120.0  # far above the shortened bound below (a few requests of 2 attempts of 2 s): past it, a hang
PAUSED: list[int] = []  # the moto pid the stage below pauses (a stage function is module-level)


class PausableMoto:
    """moto's S3 server as a process of its own, so SIGSTOP pauses the server and not this test."""

    def __init__(self, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._log = log.open("w")
        command = [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None and time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        """Resume (a stopped process does not act on SIGTERM) and stop the server."""
        if self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()

    def uri(self, path: str) -> str:
        return f"s3://{path}?endpoint_override=127.0.0.1:{self.port}&scheme=http"


@pytest.fixture
def moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PausableMoto]:
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # raising=False: on code without these constants the test still runs, and hangs into its guard
    monkeypatch.setattr(filesystems, "CONNECT_TIMEOUT_S", 2.0, raising=False)
    monkeypatch.setattr(filesystems, "REQUEST_TIMEOUT_S", 2.0, raising=False)
    monkeypatch.setattr(filesystems, "ATTEMPTS", 2, raising=False)
    server = PausableMoto(tmp_path / "moto.log")
    try:
        server.wait_ready()
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{server.port}", scheme="http", allow_bucket_creation=True)
        fs.create_dir("bucket")
        yield server
    finally:
        PAUSED.clear()
        server.close()


def outcome_within(seconds: float, call: Callable[[], Any], on_hang: Callable[[], None]) -> Any:
    """What ``call()`` returned or raised (the exception, returned), if it ended within ``seconds``; a test
    failure naming the hang otherwise, after ``on_hang`` (resuming the server) let the call end."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(call())
        except BaseException as exc:  # handed back to the test to assert on
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        on_hang()
        thread.join(60)
        pytest.fail(f"the store call was still waiting on the paused server after {seconds:.0f} s: it hangs")
    return box[0]


def make_table(ctx, inputs, params):
    return StageResult(outputs={"data": pa.table({"x": [1.0, 2.0]})})


def pauses_the_store(ctx, inputs, params):
    """The stage's work is done; the store stops answering before its output is written (first run only)."""
    if params["pause"]:
        os.kill(PAUSED[0], signal.SIGSTOP)
    return StageResult(outputs={"model": {"w": 1.0}})


def _pipeline(pause: bool) -> Pipeline:
    return Pipeline(
        "p",
        [
            Stage("data", make_table, (), ("data",)),
            Stage("g00/train", pauses_the_store, ("data",), ("model",), params={"pause": pause}, generation=0),
        ],
    )


def recorded_ledger_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every run-record write the runner makes from now on, as (status, whether the store failed it); a failed
    stage's traceback (``runs/<run id>/errors/``) as ("traceback", ...). Each write still goes to the store."""
    writes: list[tuple[str, bool]] = []
    real_write, real_traceback = Ledger.write, run_state.write_traceback

    def write(self: Ledger, status: RunStatus, stages: Any) -> None:
        try:
            real_write(self, status, stages)
        except ArtifactError:
            writes.append((status.value, True))
            raise
        writes.append((status.value, False))

    def write_traceback(*args: Any) -> str:
        try:
            written = real_traceback(*args)
        except ArtifactError:
            writes.append(("traceback", True))
            raise
        writes.append(("traceback", False))
        return written

    monkeypatch.setattr(Ledger, "write", write)
    monkeypatch.setattr(run_state, "write_traceback", write_traceback)
    return writes


def test_a_run_whose_store_stops_answering_fails_saying_so_and_how_to_resume_instead_of_hanging(
    moto: PausableMoto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix: the run waited, silent, as long as the server stayed paused (past the guard here).
    Once the store has failed one run-record write after the stage failed, the run asks no more (it wrote
    FAILED too, waiting out the timeouts a second time)."""
    PAUSED.append(moto.process.pid)
    ledger_writes = recorded_ledger_writes(monkeypatch)
    store = ArtifactStore(moto.uri("bucket/relay"))
    runner = Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0, store_option=" --artifact-uri X")
    error = outcome_within(GUARD_S, lambda: runner.run(_pipeline(pause=True), "run-1"), moto.resume)
    assert isinstance(error, StageError), repr(error)
    message = str(error)
    assert message.startswith("stage 'g00/train' failed after 1 attempt(s): ArtifactError:"), message
    assert f"the store {moto.uri('bucket/relay')} does not answer from this machine" in message, message
    assert "Timeout was reached" in message, message
    assert "once the store answers, `relay resume run-1 --artifact-uri X` continues it" in message, message
    assert [what for what, failed in ledger_writes if failed] == ["traceback"], ledger_writes  # the first record
    assert ledger_writes[-1] == ("traceback", True), ledger_writes  # write after the stage failed; none asked after

    moto.resume()
    runner = Runner(ArtifactStore(moto.uri("bucket/relay")), LocalExecutor(), RecordingTracker(), "v1", 0)
    assert runner.run(_pipeline(pause=False), "run-1").status is RunStatus.FINISHED


def test_a_write_to_a_store_that_answers_again_within_the_retries_succeeds(
    moto: PausableMoto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stall longer than one request's timeout (3 s here) but shorter than its attempts (4) costs a wait, not
    the write: the attempt after the server is resumed is answered."""
    monkeypatch.setattr(filesystems, "REQUEST_TIMEOUT_S", 3.0)
    monkeypatch.setattr(filesystems, "ATTEMPTS", 4)
    store = ArtifactStore(moto.uri("bucket/relay"))
    store.write_record("runs/run-1/ledger.json", b"before")
    moto.pause()
    resumer = threading.Timer(4.5, moto.resume)
    resumer.start()
    try:
        written = outcome_within(GUARD_S, lambda: store.write_record("runs/run-1/ledger.json", b"after"), moto.resume)
    finally:
        resumer.cancel()
        moto.resume()
    assert not isinstance(written, ArtifactError), written
    assert store.read_record("runs/run-1/ledger.json") == b"after"
