"""What a job's log and a driver's redirected console hold: the stages' and Relay's lines, not Ray's noise.

- `relay logs` (whole, and `--follow`) leaves out Ray's periodic debug dumps: the raylet's ``[state-dump]``
  lines and a core worker's ``Event stats:`` block, which a cluster whose Ray logs to stderr
  (``RAY_LOG_TO_STDERR=1``) puts in every job's log, about 50 lines a minute. Every other line is shown,
  a stage's line right after a dump included. The dump below is a real one, cut short, from a job's log.
- Off a terminal, Ray's `[repeated 3x across cluster]` notice reaches a file without colour codes: Ray
  colours it green whatever its output is, and RAY_COLOR_PREFIX=0 covers only the worker prefix. A
  terminal keeps the colour.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.cli import main
from orchestrator.jobs import watch
from orchestrator.jobs.ray_dumps import without_dumps

ROOT = Path(__file__).resolve().parents[2]
CORE = "[2026-12-07 07:16:14,502 I 14271 14300] (python-core-driver-02000000ffffffffffff)"
RAYLET = "[2026-12-07 07:13:38,635 I 8948 8948] (raylet)"

SHOWN = [
    "2026-12-07 07:16:11,945\tINFO job_manager.py:581 -- Runtime env is setting up.",
    "Running entrypoint for job smoke-1: relay run smoke.yaml",
    "07:13:54 INFO orchestrator.engine.runner: run g00/train (attempt 1, fingerprint dac6364d67ec)",
    f"{CORE} core_worker_process.cc:872: Constructing CoreWorkerProcess. pid: 14271",
    "(g00/train pid=2570) step 10 of 60: loss 0.52",
    "07:14:05 INFO orchestrator.engine.runner: done g00/train in 4.2 s",
    "",
    "Run smoke-1: per-generation results on the test set",
    "generation  balanced_accuracy",
    "0           0.7500",
]
CORE_DUMP = [
    f"{CORE} core_worker.cc:591: Event stats:",
    "",
    "",
    "Global stats: 6 total (5 active)",
    "Queueing time: mean = 0.01ms, max = 0.06ms, min = 0.06ms, total = 0.06ms",
    "Execution time:  mean = 0.00ms, total = 0.01ms",
    "Event stats:",
    "\tPeriodicalRunner.RunFnPeriodically - 2 total (1 active, 1 running), Execution time: mean = 0.00ms",
    "\tPublisher.CheckDeadSubscribers - 1 total (1 active), Execution time: mean = 0.00ms, total = 0.00ms",
    "",
    "-----------------",
    "Task execution event stats:",
    "",
    "Global stats: 0 total (0 active)",
    "Event stats:",
    "-----------------",
    "Task Event stats:",
    "",
    "IO Service Stats:",
    "Other Stats:",
    "\tgcs_grpc_in_progress:0",
    "\tcurrent number of task status events in buffer: 1",
    "",
]
STATE_DUMP = [
    f"{RAYLET} node_manager.cc:492: [state-dump] NodeManager:",
    "[state-dump] Node ID: b65c507d51b21048213dea7052eac74c48a42540051ae4b5af3d7077",
    "[state-dump] ClusterLeaseManager:",
    "[state-dump] ========== Node: b65c507d51b21048213dea7052eac74c48a42540051ae4b5af3d7077 =================",
    "[state-dump] Infeasible queue length: 0",
    "(raylet) [state-dump] Schedule queue length: 0",  # as Ray's log monitor forwards a raylet's line
]
# The dumps land between the lines a user reads: after a Ray record, right before a stage's line, Relay's, a table.
JOB_LOG = "\n".join([*SHOWN[:4], *CORE_DUMP, SHOWN[4], *CORE_DUMP, SHOWN[5], *STATE_DUMP, *SHOWN[6:]]) + "\n"
EXPECTED = "\n".join(SHOWN) + "\n"


class JobsServer:
    """Ray's JobSubmissionClient as `relay logs` calls it, answering with ``log`` (streamed in ``chunk``-long pieces)."""

    def __init__(self, log: str, chunk: int) -> None:
        self.log, self.chunk = log, chunk

    def list_jobs(self) -> list:
        return []

    def get_job_status(self, job_id: str) -> SimpleNamespace:
        return SimpleNamespace(value="SUCCEEDED")

    def get_job_logs(self, job_id: str) -> str:
        return self.log

    async def tail_job_logs(self, job_id: str):
        for start in range(0, len(self.log), self.chunk):
            yield self.log[start : start + self.chunk]


def relay_logs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *flags: str, chunk: int = 4096) -> str:
    """What `relay logs smoke-1 [flags]` prints for a job whose log is JOB_LOG."""
    monkeypatch.setattr(watch, "connect", lambda url: JobsServer(JOB_LOG, chunk))
    assert main(["logs", "smoke-1", "--address", "http://head:8265", *flags]) == 0
    return capsys.readouterr().out


def test_relay_logs_shows_every_line_but_rays_debug_dumps(monkeypatch, capsys) -> None:
    assert relay_logs(monkeypatch, capsys) == EXPECTED


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_relay_logs_follow_shows_the_same_lines_however_the_stream_is_cut(monkeypatch, capsys, chunk) -> None:
    assert relay_logs(monkeypatch, capsys, "--follow", chunk=chunk) == EXPECTED


def test_a_log_that_ends_without_a_newline_keeps_its_last_line() -> None:
    assert without_dumps("a\n" + "\n".join(STATE_DUMP) + "\nlast") == "a\nlast"
    assert without_dumps("\n".join(CORE_DUMP[:4])) == ""


REPEATED_LINE = """
import sys
from orchestrator.cli import configure_logging
from ray._private.ray_logging import LogDeduplicator
from ray._private.worker import print_worker_logs

configure_logging(verbose=False)  # as every `relay` command starts
clock = [0.0]
dedup = LogDeduplicator(5, None, None, _timesource=lambda: clock[0])
def batch(pid):
    return {"ip": "10.0.0.1", "localhost": "10.0.0.1", "pid": pid, "task_name": "g00/train", "is_err": False,
            "lines": [f"step {pid} of 60"]}
for pid in (101, 102, 103):  # three workers print the same line: Ray prints it once, then the count
    for out in dedup.deduplicate(batch(pid)):
        print_worker_logs(out, sys.stdout)
clock[0] = 10.0
for out in dedup.deduplicate(batch(104)) + dedup.flush():
    print_worker_logs(out, sys.stdout)
"""


def driver_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in ("RAY_COLOR_PREFIX", "RAY_DEDUP_LOGS")}
    return {**env, "PYTHONPATH": str(ROOT)}


def test_rays_repeated_line_notice_reaches_a_file_without_colour_codes(tmp_path) -> None:
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        subprocess.run([sys.executable, "-c", REPEATED_LINE], stdout=out, env=driver_env(), check=True, timeout=120)
    text = log.read_text()
    assert "(g00/train pid=104) step 104 of 60 [repeated 3x across cluster]" in text, text
    assert "\x1b" not in text, f"escape codes in the file: {text!r}"


def test_a_terminal_keeps_rays_colours() -> None:
    leader, follower = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", REPEATED_LINE], stdout=follower, env=driver_env(), check=True, timeout=120
        )
        assert done.returncode == 0
        os.close(follower)
        follower = -1
        printed = read_all(leader)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert "\x1b[32m [repeated 3x across cluster]" in printed, repr(printed)


def read_all(fd: int) -> str:
    """Everything written to a pty before its other end closed (Linux reports the end as EIO)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
