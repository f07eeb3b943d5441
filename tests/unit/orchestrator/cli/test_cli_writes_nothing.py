"""Bad paths, names and stages: exit 2 with one message, before the first write (no mlflow.db, no run record).

Every case runs from an empty working folder with the workspace inside it, and checks that
nothing at all appeared there: not the workspace, not `./escaped-*`, not mlartifacts/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


def files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def refused(argv: list[str], root: Path, capsys: pytest.CaptureFixture) -> str:
    """Run the CLI; it must exit 2, print one `relay:` message and write nothing under ``root``."""
    before = files(root)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("relay: ") == 1 and "Traceback" not in err, err
    assert files(root) == before, f"bad input wrote {files(root) - before}"
    return err


def config_with(folder: Path, **changes: object) -> Path:
    data = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            data.setdefault(section, {})[name] = value
        else:
            data[section] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_name_that_would_leave_the_workspace_is_refused(cwd: Path, capsys, command: str) -> None:
    config = config_with(cwd.parent, name="../../escaped")
    err = refused([command, str(config), "run.executor=local"], cwd.parents[1], capsys)
    assert "name: name '../../escaped' is not a safe name" in err and "no '/' or '..'" in err


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", "", "x" * 200])
def test_a_run_id_that_would_leave_the_workspace_is_refused(cwd: Path, capsys, name: str) -> None:
    err = refused(["run", str(SMOKE), "run.executor=local", "--run-id", name], cwd.parents[1], capsys)
    assert "run id" in err and "is not a safe name" in err


@pytest.mark.parametrize("command", [["resume", "../../escaped"], ["generations", "../x"]])
def test_resume_and_generations_refuse_a_run_id_with_a_path(cwd: Path, capsys, command: list[str]) -> None:
    assert "is not a safe name" in refused(command, cwd.parents[1], capsys)


def test_tune_refuses_a_sweep_name_with_a_path(cwd: Path, capsys) -> None:
    err = refused(["validate", str(SMOKE), "tune.name=../sweeps"], cwd.parents[1], capsys)
    assert "tune.name: name '../sweeps' is not a safe name" in err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_artifact_uri_with_an_unknown_scheme_is_refused(cwd: Path, capsys, command: str) -> None:
    err = refused([command, str(SMOKE), "run.executor=local", "run.artifact_uri=nosuchscheme://bucket/x"], cwd, capsys)
    assert "run.artifact_uri: pyarrow cannot open 'nosuchscheme://bucket/x'" in err
    assert "Unrecognized filesystem type" in err and "s3://bucket/relay" in err


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_workspace_that_is_a_file_is_refused(cwd: Path, capsys, command: str) -> None:
    (cwd / "afile").write_text("x")
    err = refused([command, str(SMOKE), "run.executor=local", "run.workspace=afile"], cwd, capsys)
    assert f"run.workspace: {cwd / 'afile'} is a file, not a folder" in err


def test_a_workspace_under_a_file_is_refused(cwd: Path, capsys) -> None:
    (cwd / "afile").write_text("x")
    err = refused(["run", str(SMOKE), "run.executor=local", "run.workspace=afile/ws"], cwd, capsys)
    assert f"{cwd / 'afile'} is a file, so {cwd / 'afile' / 'ws'} cannot be a folder" in err


def test_the_workspace_variable_is_named_when_it_is_wrong(cwd: Path, capsys, monkeypatch) -> None:
    (cwd / "afile").write_text("x")
    monkeypatch.setenv("RELAY_WORKSPACE", str(cwd / "afile"))
    assert "$RELAY_WORKSPACE: " in refused(["validate", str(SMOKE)], cwd, capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_workspace_that_cannot_be_written_is_refused(cwd: Path, capsys) -> None:
    locked = cwd / "locked"
    locked.mkdir(mode=0o555)
    err = refused(["run", str(SMOKE), "run.executor=local", f"run.workspace={locked / 'ws'}"], cwd, capsys)
    assert f"cannot write in {locked}" in err


def test_a_tracking_database_that_is_a_folder_is_refused(cwd: Path, capsys) -> None:
    (cwd / "db").mkdir()
    err = refused(["run", str(SMOKE), "run.executor=local", f"tracking.uri=sqlite:///{cwd / 'db'}"], cwd, capsys)
    assert f"tracking.uri: {cwd / 'db'} is a folder, not a database file" in err


def test_an_unknown_stop_after_stage_is_refused_before_mlflow_or_the_run_record(cwd: Path, capsys) -> None:
    err = refused(["run", str(SMOKE), "run.executor=local", "--stop-after", "g99/train"], cwd, capsys)
    assert "no stage named 'g99/train'; valid stages: data/split, g00/train" in err
    assert not (cwd / "relay-workspace").exists()


def test_tune_output_that_is_a_file_is_refused(cwd: Path, capsys) -> None:
    (cwd / "out").write_text("x")
    err = refused(["tune", str(SMOKE), "--output", "out"], cwd, capsys)
    assert f"--output: {cwd / 'out'} is a file, not a folder" in err


def test_a_sweep_whose_trials_cannot_start_on_the_local_ray_is_refused(cwd: Path, capsys) -> None:
    """2 training workers beside a trial's 0.1-CPU driver need 2.1 of smoke.yaml's 2 CPUs: refused before Ray starts."""
    err = refused(["tune", str(SMOKE), "resources.train.workers=2"], cwd, capsys)
    assert "a trial needs 2.1 CPUs at once (0.1 for its driver beside g00/train's 2)" in err
    assert "local Ray has 2" in err


def test_a_read_only_workspace_that_exists_is_named_as_such(cwd: Path, monkeypatch) -> None:
    """Not "WS cannot be made there" for a folder that is there. os.access is replaced because root (CI) may
    write anywhere; the path logic around it is the code under test."""
    from orchestrator.cli import preflight

    workspace = cwd / "ws"
    workspace.mkdir()
    monkeypatch.setattr(preflight.os, "access", lambda path, mode: Path(path) != workspace)
    assert preflight.folder_problem(workspace, "run.workspace") == (
        f"run.workspace: cannot write in {workspace} (read-only); make it writable or pick a folder you can write in"
    )
    inside = preflight.folder_problem(workspace / "new", "run.workspace")
    assert inside is not None and f"so {workspace / 'new'} cannot be made there" in inside
