"""`tracking.experiment` MLflow would refuse, or that reads as no name, is refused when the file is read.

Why: `relay run smoke.yaml "tracking.experiment=''"` started, wrote a run record, and then MLflow failed
with "Invalid experiment name: ''".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.cli import main
from orchestrator.cli.pipeline_files import load_pipeline_file
from orchestrator.config import TrackingSettings
from orchestrator.errors import ConfigError
from tests.unit.orchestrator.cli.problems import problem_lines

SMOKE = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("", "expected a non-empty experiment name, got ''; give one"),
        ("   ", "expected a non-empty experiment name, got '   '; give one"),
        (" relay", "' relay' begins or ends with spaces"),
        ("x" * 501, "expected at most 500 characters (MLflow's limit), got 501"),
    ],
)
def test_an_experiment_name_mlflow_refuses_or_that_reads_as_another_is_refused(name: str, said: str) -> None:
    with pytest.raises(ValidationError, match=said.replace("(", r"\(").replace(")", r"\)")):
        TrackingSettings(experiment=name)


def test_a_name_with_spaces_inside_and_up_to_500_characters_is_taken() -> None:
    assert TrackingSettings(experiment="my runs").experiment == "my runs"
    assert len(TrackingSettings(experiment="x" * 500).experiment) == 500


def test_relay_run_refuses_an_empty_experiment_with_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", str(SMOKE), f"run.workspace={workspace}", "tracking.experiment=''", "run.executor=local"]
    assert main([*argv, "--stop-after", "data/split"]) == 2
    (problem,) = problem_lines(capsys.readouterr().err)
    assert problem.startswith("tracking.experiment: expected a non-empty experiment name, got ''")
    assert problem.endswith("(set on the command line: tracking.experiment='')")
    assert not workspace.exists()


@pytest.mark.parametrize("key", ["tracking.experiment", "name"])
def test_a_text_key_given_nothing_says_so_not_pydantics_none_type(key: str) -> None:
    """`tracking.experiment=` reads as YAML null: the problem was 'must be a valid string (got None of type NoneType)'."""
    with pytest.raises(ConfigError) as refused:
        load_pipeline_file(str(SMOKE), [f"{key}="])
    (problem,) = refused.value.problems
    assert problem.startswith(f"{key}: must be text, got nothing (YAML reads an empty value as null); give a value")
    assert "NoneType" not in problem
