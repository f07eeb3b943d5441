"""`relay resume d461abcd`: the 8 characters MLflow's UI shows of a run id are as likely a paste as the whole id,
so the refusal says to pass the Relay run id for them too (it said only that the store holds no such run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_generations import TOY, tracked

HINT = "looks like an MLflow run id, which the tracking store here does not know: pass the Relay run id"


@pytest.mark.parametrize("command", ["resume", "delete"])
@pytest.mark.parametrize("given", ["d461abcd", "d461abcd0123456789abcdef01234567"])
def test_an_mlflow_run_id_or_its_start_gets_the_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings, command: str, given: str
) -> None:
    tracked(tmp_path, "toy-20261205-070000-ab12", {"pipeline": "toy", "name": "toy"})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main([command, given, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert "no run" in err and repr(given) in err and HINT in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("given", ["smoke-20261205-070000-ab12", "d461abc", "d461abcx"])
def test_a_relay_run_id_shape_gets_no_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings, given: str
) -> None:
    tracked(tmp_path, "toy-20261205-070000-ab12", {"pipeline": "toy", "name": "toy"})
    assert main(["resume", given, "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert f"no run {given!r}" in err and HINT not in err
