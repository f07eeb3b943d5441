"""Two `relay resume` of one run on one machine: the second is refused while the first is still starting Ray.

Before, the first resume named itself in the run's ledger only once Ray had started and its stages
were planned; meanwhile the record still named the dead driver, so a second resume (a local one
beside the job `relay submit --resume` had started) ran the same stages into the same checkpoint
folder and MLflow run. Real processes: a `relay run` on Ray killed while Ray starts, a `relay resume`
caught while its own Ray starts (its gcs_server is a child of it), then a second `relay resume`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster import descendants, processes_of_group, stop_processes, wait_for
from tests.integration.relay_cli import relay, relay_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
RAY_PROCESSES = ("gcs_server", "raylet")


def started(workspace: Path, log: Path, *args: str) -> subprocess.Popen:
    """The real CLI in its own process group (a terminal's foreground job), its output in ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        env=relay_env(workspace),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def starting_ray(driver: subprocess.Popen) -> bool:
    """The driver has started Ray's own processes (its GCS or raylet), or has exited."""
    if driver.poll() is not None:
        return True
    for pid in descendants({driver.pid}):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() in RAY_PROCESSES:
                return True
        except OSError:
            continue
    return False


def ended(driver: subprocess.Popen) -> None:
    """The driver, its group and every process it started (Ray's call setsid), ended."""
    pids = {driver.pid} | descendants({driver.pid})
    if driver.poll() is None:
        pids |= processes_of_group(driver.pid)
    stop_processes(pids)
    driver.wait(timeout=60)


def test_a_second_resume_is_refused_while_the_first_starts_ray(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    first = started(workspace, tmp_path / "run.log", "run", str(SMOKE), "train.steps=2000", "--run-id", "twice")
    record = workspace / "artifacts" / "runs" / "twice" / "command.json"
    try:
        wait_for(lambda: record.exists() or first.poll() is not None, 300, "the run's record")
        assert first.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        ended(first)  # SIGKILL-like: the record names a driver that is gone
    resuming = started(workspace, tmp_path / "resume.log", "resume", "twice")
    try:
        wait_for(lambda: starting_ray(resuming), 300, "the resume to start Ray")
        assert resuming.poll() is None, (tmp_path / "resume.log").read_text()[-3000:]
        second = started(workspace, tmp_path / "second.log", "resume", "twice")
        try:
            code = second.wait(timeout=300)
        except subprocess.TimeoutExpired:  # not refused: it went on to run the stages a second time
            code = None
        finally:
            ended(second)
        said = (tmp_path / "second.log").read_text()
        assert code == 2, said[-3000:]
        assert f"run twice is still running (driver pid {resuming.pid} on" in said, said
    finally:
        ended(resuming)
    listed = relay("runs", workspace=workspace)
    assert [line.split()[2] for line in listed.stdout.splitlines() if line.startswith("twice ")] == ["INTERRUPTED"]
