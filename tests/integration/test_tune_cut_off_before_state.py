"""A real `relay tune` on the folder a start cut off right after its Tuner was built leaves.

Why: ``tune.Tuner(...)`` writes ray/NAME/tuner.pkl as soon as it is built, before Ray Tune saves any
state (``experiment_state-*.json``). A start cut off then (a Ctrl-C as Ray started, a kill) left such a
folder: the `--resume` its interruption printed ended in Ray Tune's traceback (KeyError: 'train.lr',
exit 1, the sweep's MLflow run FAILED), and the same command without --resume was refused as one over an
existing sweep; only deleting the folder by hand got out. The folder here is written by the sweep's own
``make_tuner`` and the files a start writes before it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.pipeline_files import load_pipeline_file
from orchestrator.cli.sweeps.sweep_folder import save_sweep_config, save_sweep_stores
from orchestrator.tune import sweep
from orchestrator.tune.plan import SweepPlan, plan_sweep
from tests.integration.relay_cli import mlflow_client, relay, smoke_sweep

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

OVERRIDES = ("crest.generations=1", "train.steps=20", "tracking.log_models=false", "tracking.system_metrics=false")


def cut_off_after_the_tuner(config: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> SweepPlan:
    """The sweep's folder as a start killed right after ``tune.Tuner(...)`` left it: its config, its stores, tuner.pkl."""
    monkeypatch.setenv("RELAY_WORKSPACE", str(workspace))  # the stores the `relay tune` below plans
    spec, validated, data = load_pipeline_file(str(config), list(OVERRIDES), None)
    plan = plan_sweep(data, validated, spec.build, "code", source=str(config))
    output = Path(plan.output)
    output.mkdir(parents=True)
    save_sweep_config(output, data)
    save_sweep_stores(output, plan)
    sweep.make_tuner(plan, 1, resume=False)
    assert (plan.experiment_path / "tuner.pkl").is_file()
    return plan


def tree(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in sorted(folder.rglob("*"))}


def sweep_runs(workspace: Path, name: str) -> list:
    """The MLflow runs of sweep ``name`` itself (not its trials')."""
    if not (workspace / "mlflow.db").exists():
        return []
    client = mlflow_client(workspace)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    query = f"tags.`relay.kind` = 'sweep' and attributes.run_name = '{name}'"
    return client.search_runs(experiments, query)


def test_its_resume_says_no_trial_ran_and_the_same_command_runs_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    config = smoke_sweep(tmp_path, "cutoff", [0.05])
    plan = cut_off_after_the_tuner(config, workspace, monkeypatch)
    before = tree(workspace)

    resumed = relay("tune", str(config), *OVERRIDES, "--resume", workspace=workspace)
    assert resumed.returncode == 2, resumed.stderr[-4000:]
    assert "never got to a trial); start it without --resume" in resumed.stderr, resumed.stderr[-4000:]
    assert "Traceback" not in resumed.stderr
    assert tree(workspace) == before, "a refused --resume wrote nothing"

    started = relay("tune", str(config), *OVERRIDES, workspace=workspace, timeout_s=800)
    assert started.returncode == 0, started.stderr[-4000:]
    assert "lr: 0.05" in (Path(plan.output) / "best.yaml").read_text()
    assert sweep.can_resume(plan), "the sweep Ray Tune ran saved its state"
    assert [run.info.status for run in sweep_runs(workspace, "cutoff")] == ["FINISHED"]


def test_a_resume_ray_tune_cannot_carry_out_is_one_message_not_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep's saved state Ray Tune cannot read (cut short): one line naming the sweep, its state and the ways on."""
    workspace = tmp_path / "ws"
    config = smoke_sweep(tmp_path, "unreadable", [0.05])
    plan = cut_off_after_the_tuner(config, workspace, monkeypatch)
    (plan.experiment_path / "experiment_state-2026-12-07_04-00-00.json").write_text('{"trial_data": [')
    assert sweep.can_resume(plan)

    resumed = relay("tune", str(config), *OVERRIDES, "--resume", workspace=workspace, timeout_s=800)
    assert resumed.returncode == 1, resumed.stderr[-4000:]
    said = f"sweep unreadable: Ray Tune could not go on from the sweep's saved state at {plan.experiment_path}"
    assert f"{said}: JSONDecodeError: " in resumed.stderr, resumed.stderr[-4000:]
    assert "Traceback" not in resumed.stderr, resumed.stderr[-4000:]
