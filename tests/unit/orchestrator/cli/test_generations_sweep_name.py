"""`relay generations SWEEP_NAME`: a sweep's name (what `relay tune` prints, and its trials are named after) gets
the same answer as its MLflow run id: it is a sweep, not a run, and these are its trials.

Before the fix, `smoke-sweep` got "no run 'smoke-sweep' in the artifact store", though `relay runs` listed
its trials (smoke-sweep-ccf97_00000, ...).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_generations import TOY
from tests.unit.orchestrator.cli.test_generations_sweep_run import sweep_with_trials


def test_a_sweeps_name_names_the_sweep_and_its_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    sweep_with_trials(tmp_path, ["toy-sweep-a_00000", "toy-sweep-a_00001"], best="toy-sweep-a_00001")
    assert main(["generations", "toy-sweep", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    err = capsys.readouterr().err
    assert "run_id: toy-sweep is the name of a sweep (relay tune), not of a run" in err
    assert "toy-sweep-a_00000, toy-sweep-a_00001" in err
    assert f"its best trial: relay generations toy-sweep-a_00001 --workspace {tmp_path}" in err
    assert "no run 'toy-sweep'" not in err


def test_a_name_no_sweep_has_is_still_no_such_run(
    tmp_path: Path, capsys: pytest.CaptureFixture, no_store_settings
) -> None:
    sweep_with_trials(tmp_path, ["toy-sweep-a_00000"], best=None)
    assert main(["generations", "other-sweep", "--workspace", str(tmp_path)], pipelines={"toy": TOY}) == 2
    assert "no run 'other-sweep' in the artifact store" in capsys.readouterr().err
