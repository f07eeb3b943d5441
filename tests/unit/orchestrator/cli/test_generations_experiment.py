"""`relay generations RUN --experiment NAME` reads NAME, as the flag does without a run id.

Before the fix: with a run id the flag was ignored (the experiment came from the run's record) and `--experiment nosuch`
exited 0, while without a run id the same flag was exit 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")


def test_generations_of_a_run_reads_the_experiment_the_flag_names(tmp_path: Path, capsys, no_store_settings) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", "crest.generations=1", f"run.workspace={workspace}"]
    assert main([*argv, "tracking.experiment=mine", "--run-id", "done"]) == 0
    read = ["generations", "done", "--workspace", str(workspace)]
    assert main(read) == 0, "without the flag: the experiment the run's record names"
    assert main([*read, "--experiment", "mine"]) == 0
    capsys.readouterr()
    for argv in (read, ["generations", "--workspace", str(workspace)]):  # a run id or the newest run: alike
        assert main([*argv, "--experiment", "nosuch"]) == 2
        err = capsys.readouterr().err
        assert "no MLflow experiment 'nosuch'" in err and "experiments there: mine" in err
    assert main([*read, "--experiment", "Default"]) == 2  # an experiment that does not hold the run
    assert "no pipeline run 'done' in experiment 'Default'" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [[], ["--experiment", "relay"]])
def test_a_run_tracked_in_the_default_experiment_reads_alike_with_or_without_the_flag(
    tmp_path: Path, capsys, no_store_settings, flag: list[str]
) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", "crest.generations=1", f"run.workspace={workspace}"]
    assert main([*argv, "--run-id", "plain"]) == 0
    capsys.readouterr()
    assert main(["generations", "plain", "--workspace", str(workspace), *flag]) == 0
    assert next(line for line in capsys.readouterr().out.splitlines() if line.startswith("0 ")).split()[1] != "-"
