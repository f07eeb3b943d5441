"""`run.executor=local` runs the stages in this process and takes no cluster address: given one, it says so.

Before, `relay run CONFIG run.executor=local --address HOST:PORT` (or `run.ray_address=...`) ran on this
machine, exit 0, the address dropped without a word and never checked; so did `relay resume` of such a
run with --address; and `relay tune ... run.executor=local --address HOST:PORT`, whose trials run on Ray
anyway, skipped the address check and hung in ray.init. RAY_ADDRESS, the shell's default for every Ray
tool, is no request of the command: the local executor leaves it alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.run.run_locations import RAY_JOB_ENV
from tests.unit.orchestrator.cli.problems import problem_lines

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")
LOCAL = ["run.executor=local", "train.steps=3", "crest.generations=1"]
TAKES_NO_ADDRESS = "run.executor=local runs every stage in this process, without Ray, so it joins no cluster"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where a run writes (not there yet), with no store, cluster or Ray job of the shell's own."""
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", RAY_JOB_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "ws"


def files(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*")) if root.exists() else []


def refused(argv: list[str], root: Path, capsys: pytest.CaptureFixture) -> list[str]:
    """The problem lines `relay ARGV` prints for bad input: exit 2, nothing else on stderr, nothing written."""
    before = files(root)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("relay: ") and "Traceback" not in err, err
    assert files(root) == before, "bad input wrote something"
    return problem_lines(err)


def test_run_with_address_is_refused_naming_the_fix(workspace: Path, gone: str, capsys) -> None:
    argv = ["run", SMOKE, *LOCAL, f"run.workspace={workspace}", "--address", gone]
    (line,) = refused(argv, workspace.parent, capsys)
    assert line.startswith(f"--address: {TAKES_NO_ADDRESS}"), line
    assert f"drop --address, or set run.executor=ray to run the stages on Ray with --address {gone}" in line
    assert line.endswith("(set on the command line: run.executor=local)"), line


def test_run_with_ray_address_in_the_config_is_refused_naming_the_override(workspace: Path, gone: str, capsys) -> None:
    argv = ["run", SMOKE, *LOCAL, f"run.workspace={workspace}", f"run.ray_address={gone}"]
    (line,) = refused(argv, workspace.parent, capsys)
    assert line.startswith(f"run.ray_address: {TAKES_NO_ADDRESS}"), line
    assert "drop run.ray_address, or set run.executor=ray" in line
    assert line.endswith(f"(set on the command line: run.ray_address={gone})"), line
    validate = ["validate", SMOKE, *LOCAL, f"run.ray_address={gone}"]
    assert refused(validate, workspace.parent, capsys) == [line], "`relay validate` makes the checks `relay run` makes"


def test_resume_of_a_local_run_takes_no_address_and_resumes_without_one(workspace: Path, gone: str, capsys) -> None:
    assert (
        main(["run", SMOKE, *LOCAL, f"run.workspace={workspace}", "--run-id", "r1", "--stop-after", "data/split"]) == 0
    )
    (line,) = refused(["resume", "r1", "--workspace", str(workspace), "--address", gone], workspace.parent, capsys)
    assert line == (
        "--address: run r1 was started with run.executor=local, which runs every stage in this process, without "
        "Ray, so it joins no cluster and takes no address; resume it without --address"
    )
    assert main(["resume", "r1", "--workspace", str(workspace)]) == 0


def test_ray_address_of_the_shell_is_left_alone_by_the_local_executor(
    workspace: Path, gone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAY_ADDRESS names the cluster for every Ray tool of the shell (and Ray sets it in a job): not this run's."""
    monkeypatch.setenv("RAY_ADDRESS", gone)
    argv = ["run", SMOKE, *LOCAL, f"run.workspace={workspace}", "--stop-after", "data/split"]
    assert main(argv) == 0


def test_tune_checks_the_address_whatever_run_executor_says(workspace: Path, gone: str, capsys) -> None:
    """A sweep's trials run on Ray, so the cluster it joins is checked (it hung in ray.init)."""
    argv = ["tune", SMOKE, *LOCAL, f"run.workspace={workspace}", "--output", str(workspace / "sweep")]
    (line,) = refused([*argv, "--address", gone], workspace.parent, capsys)
    assert line.startswith(f"--address: no Ray cluster answers at {gone}"), line
