"""`relay run --run-id X` where run X has finished: refused (exit 2, nothing written), with another id as the way on.

Why: the refusal said "finish it with `relay resume X`" whatever the run's state, so for a finished run it sent
the user to a resume that only checks the run's outputs again and leaves them with no new run; `relay submit
--run-id X` already told the two apart ("it has finished: pick another --run-id"). A run that has not finished
is still sent to `relay resume` (test_cli_preflight_checks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused

TINY = ["run.executor=local", "train.steps=2", "train.report_every=1"]


def test_the_id_of_a_finished_run_is_refused_with_another_id_as_the_way_on(
    cwd: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_WORKSPACE", str(cwd / "ws"))
    assert main(["run", str(SMOKE), *TINY, "--run-id", "done"]) == 0
    capsys.readouterr()

    err = refused(["run", str(SMOKE), *TINY, "--run-id", "done"], cwd, capsys)

    assert f"--run-id: a run 'done' already exists in {cwd / 'ws' / 'artifacts'}; it has finished: " in err
    assert "pick another id (or leave --run-id out for a new one)" in err
    assert "relay resume" not in err
