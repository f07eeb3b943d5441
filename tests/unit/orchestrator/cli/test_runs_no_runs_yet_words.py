"""`relay runs` where no run has been made yet says only that, without calling the path a mistake.

Why: before the first `relay run` (the default ./relay-workspace not made yet, or a fresh workspace whose
artifacts/ no run has written), `relay runs` said "no runs in WS/artifacts yet (WS/artifacts does not exist:
check the path): ...", sending a new user to look for a typo in a path they never typed. A store named on
purpose that is not there is refused (exit 2, test_runs_named_store_missing); what reaches this line has no run
yet, which is no mistake.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_runs_filters_and_diff import SPECS

START = "start one with `relay run pipelines/configs/smoke.yaml`"


def test_the_default_workspace_before_the_first_run_says_no_runs_yet_and_nothing_else(
    cwd: Path, no_store_settings, capsys
) -> None:
    assert main(["runs"], pipelines=SPECS) == 0

    captured = capsys.readouterr()
    assert captured.out == f"no runs in {cwd / 'relay-workspace' / 'artifacts'} yet: {START}\n"
    assert captured.err == ""
    assert list(cwd.iterdir()) == []


def test_a_fresh_workspace_named_on_purpose_says_no_runs_yet_and_nothing_else(
    cwd: Path, no_store_settings, monkeypatch, capsys
) -> None:
    fresh = cwd / "fresh"
    fresh.mkdir()
    monkeypatch.setenv("RELAY_WORKSPACE", str(fresh))

    assert main(["runs"], pipelines=SPECS) == 0

    assert capsys.readouterr().out == f"no runs in {fresh / 'artifacts'} yet: {START}\n"
    assert list(fresh.iterdir()) == []
