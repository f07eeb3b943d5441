"""`relay runs` of a workspace or artifact store named on purpose that is not there: exit 2, as `relay generations`.

Why: `relay runs --workspace /work/qa3/nope` said "no runs in /work/qa3/nope/artifacts yet (... does not exist:
check the path)" and exited 0, while `relay generations --workspace /nope` exits 2: a script could not tell a
mistyped path from a workspace with no runs. A workspace that exists but holds no run yet, and the default
workspace before the first `relay run`, still say "no runs ... yet", exit 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_runs_filters_and_diff import SPECS


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize(
    ("option", "env", "said"),
    [
        ("--workspace", None, "--workspace: the workspace {missing} does not exist: check the path"),
        (None, "RELAY_WORKSPACE", "$RELAY_WORKSPACE: the workspace {missing} does not exist: check the path"),
        ("--artifact-uri", None, "--artifact-uri: the artifact store {missing} does not exist: check the path"),
        (None, "RELAY_ARTIFACT_URI", "$RELAY_ARTIFACT_URI: the artifact store {missing} does not exist"),
    ],
)
def test_a_named_store_that_is_not_there_is_exit_2_and_writes_nothing(
    cwd: Path, no_store_settings, monkeypatch, capsys, option: str | None, env: str | None, said: str
) -> None:
    missing = cwd / "nope"
    argv = ["runs", *((option, str(missing)) if option else ())]
    if env:
        monkeypatch.setenv(env, str(missing))

    assert main(argv, pipelines=SPECS) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("does not exist") == 1 and said.format(missing=missing) in captured.err
    assert files_under(cwd.parents[1]) == ["a", "a/b"]


def test_a_workspace_with_no_run_yet_and_the_default_one_say_no_runs_yet(cwd: Path, no_store_settings, capsys) -> None:
    (cwd / "fresh").mkdir()
    assert main(["runs", "--workspace", str(cwd / "fresh")], pipelines=SPECS) == 0
    assert capsys.readouterr().out.startswith(f"no runs in {cwd / 'fresh' / 'artifacts'} yet")

    assert main(["runs"], pipelines=SPECS) == 0
    assert capsys.readouterr().out.startswith(f"no runs in {cwd / 'relay-workspace' / 'artifacts'} yet")
    assert files_under(cwd) == ["fresh"]
