"""What each trial really runs with (seed, fixed sections), where a sweep may write, and what its table says."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import validate_config
from orchestrator.tune.plan import SweepPlan
from orchestrator.tune.trial import TrialState
from orchestrator.tune.trial_rows import TrialRow, trial_row
from pipelines.builders import crest
from tests.unit.orchestrator.tune.test_tune_config import METRIC, plan, problems, smoke_data

ROOT = Path(__file__).resolve().parents[4]
# --- 1. seed is searched for real ------------------------------------------------------------


class _Started(Exception):
    """Raised by the fake Runner once it has been built: the test needs only its arguments."""


class _NoStore:
    """A store that keeps nothing: the trial's record of its sweep goes nowhere."""

    def write_record(self, relative: str, data: bytes) -> None:
        pass

    def read_record(self, relative: str) -> bytes | None:
        return None


def without_ray_or_mlflow(monkeypatch: pytest.MonkeyPatch, tracker: Any, runner: Any) -> None:
    """`run_trial` with ``tracker`` and ``runner`` in place of MLflow's and the Runner, and no store or Ray."""
    from orchestrator.tune import trial

    monkeypatch.setattr(trial, "mlflow_tracker", lambda *args, **kwargs: tracker)
    monkeypatch.setattr(trial, "ArtifactStore", lambda uri: _NoStore())
    monkeypatch.setattr(trial, "RayExecutor", lambda: None)
    monkeypatch.setattr(trial, "Runner", runner)


def _runner_seed(monkeypatch: pytest.MonkeyPatch, sweep: SweepPlan, sampled: dict) -> int:
    """The seed run_trial hands its Runner for a trial sampled ``sampled`` (Ray, MLflow and the store faked)."""
    from ray import tune

    from orchestrator.tune import trial

    seeds = []

    class FakeRunner:
        def __init__(self, store, executor, tracker, code_version, seed, copies, continued_by=None) -> None:
            seeds.append(seed)
            raise _Started

    class FakeTracker:
        def start_pipeline(self, *args: Any, **kwargs: Any) -> None:
            pass

        def end_pipeline(self, status: str) -> None:
            pass

    class FakeContext:
        def get_trial_id(self) -> str:
            return "abcde_00000"

    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "get_context", FakeContext)
    without_ray_or_mlflow(monkeypatch, FakeTracker(), FakeRunner)
    with pytest.raises(_Started):
        trial.run_trial(sampled, sweep)
    return seeds[0]


def test_a_sampled_seed_reaches_the_trials_runner_and_its_fingerprints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trial's Runner took the base config's seed: every trial had the same fingerprints and cache hits."""
    from orchestrator.engine.fingerprint import fingerprint

    sweep = plan(smoke_data(space={"seed": {"choice": [1, 2]}}), tmp_path)
    assert sweep.seed == 0
    seeds = [_runner_seed(monkeypatch, sweep, {"seed": value}) for value in (1, 2)]
    assert seeds == [1, 2]
    stage = next(s for s in crest.build(validate_config(crest.CrestConfig, sweep.base)).stages if s.seeded)
    assert fingerprint(stage, {}, "code", seeds[0]) != fingerprint(stage, {}, "code", seeds[1])


def test_without_seed_in_the_space_a_trial_keeps_the_sweeps_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = plan(smoke_data(space={"train.lr": {"choice": [0.01, 0.1]}}) | {"seed": 7}, tmp_path)
    assert _runner_seed(monkeypatch, sweep, {"train.lr": 0.1}) == 7


@pytest.mark.parametrize("scheduler", ["pbt", "pb2"])
def test_pbt_may_not_perturb_the_seed(scheduler: str) -> None:
    space = {"seed": {"randint": [1, 2]}, "train.lr": {"uniform": [0.01, 0.1]}}
    found = problems(smoke_data(scheduler=scheduler, perturbation_interval=1, space=space))
    assert any("seed cannot be perturbed" in p and "asha" in p for p in found), found


# --- 1 and 3. keys that cannot vary per trial ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "domain"),
    [
        ("run.num_cpus", {"choice": [1, 2]}),
        ("tracking.experiment", {"choice": ["a", "b"]}),
        ("tune.num_samples", {"choice": [1, 2]}),
    ],
)
def test_a_key_of_a_fixed_section_is_refused_naming_why(key: str, domain: dict) -> None:
    """run.* / tracking.* values were silently ignored by trials; tune.* read as a missing tune.metric."""
    [problem] = problems(smoke_data(space={key: domain}))
    assert f"{key} cannot vary per trial" in problem and "remove it from tune.space" in problem
    assert "required key is missing" not in problem


@pytest.mark.parametrize("command", ["validate", "tune"])
def test_cli_refuses_a_run_key_in_the_space_with_exit_2_and_writes_nothing(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(smoke_data(space={"run.num_cpus": {"choice": [1, 2]}})))
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    assert main([command, str(config)]) == 2
    assert "run.num_cpus cannot vary per trial" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()


# --- 2. joining a cluster needs durable stores ----------------------------------------------


def test_tune_joining_a_cluster_refuses_a_workspace_in_a_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`relay run --address` refused a workspace under /tmp; `relay tune --address` accepted it."""
    from orchestrator.cli.run import cluster_fit

    joined = []
    monkeypatch.setattr(cluster_fit, "check_cluster", lambda *args, **kwargs: joined.append(args))
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(smoke_data()))
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("RELAY_ARTIFACT_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["tune", str(config), "--address", "10.0.0.1:6379"]) == 2
    err = capsys.readouterr().err
    assert "temporary folder" in err and "run.artifact_uri" in err
    assert not (tmp_path / "ws").exists() and joined  # the cluster is checked first, as by `relay run`


def test_tune_joining_a_cluster_refuses_a_sweep_folder_in_a_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """best.yaml, the trials and Ray Tune's state for --resume are what the user keeps: not in /tmp either."""
    from orchestrator.cli.run import cluster_fit, run_locations

    monkeypatch.setattr(cluster_fit, "check_cluster", lambda *args, **kwargs: None)
    monkeypatch.setattr(run_locations, "durability_problems", lambda locations: [])  # the stores: tmp_path
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(smoke_data()))
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    output = tmp_path / "out"
    assert main(["tune", str(config), "--address", "10.0.0.1:6379", "--output", str(output)]) == 2
    assert f"--output: the sweep folder {output} would be" in capsys.readouterr().err
    assert not output.exists() and not (tmp_path / "ws").exists()


# --- 4. a trial that never started -----------------------------------------------------------


def _result(path: Path, metrics: dict | None = None, checkpoint: Any = None, frame: Any = None) -> Any:
    from ray import tune

    return tune.Result(
        metrics=metrics or {}, checkpoint=checkpoint, error=None, path=str(path), metrics_dataframe=frame
    )


def test_a_trial_that_never_started_is_unfinished_with_its_sampled_values(tmp_path: Path) -> None:
    """After Ctrl-C a PENDING trial read `stopped early`, 0 generations, no values."""
    sweep = plan(smoke_data(space={"train.lr": {"choice": [0.01, 0.1]}}))
    pending = _result(tmp_path / "run_trial_abcde_00003_3")
    assert trial_row(sweep, pending).status == "unfinished"
    row = trial_row(sweep, pending, sampled={"train.lr": 0.1})
    assert row.status == "unfinished" and row.values == {"train.lr": 0.1} and row.by_generation == {}
    assert row.trial_id == "abcde_00003"


def test_tune_configs_come_from_tunes_trials_in_the_grids_order() -> None:
    from orchestrator.tune.trial_rows import tune_configs

    class Trial:
        def __init__(self, config: dict) -> None:
            self.config = config

    class Analysis:
        def __init__(self) -> None:
            self.trials = [Trial({"train.lr": 0.1}), Trial({"train.lr": 0.01})]

    class Grid(list):
        _experiment_analysis = Analysis()

    assert tune_configs(Grid([1, 2])) == [{"train.lr": 0.1}, {"train.lr": 0.01}]
    assert tune_configs([1, 2]) == [{}, {}]  # kept elsewhere by another Ray: no values, still unfinished


# --- 5. PBT: the lineage the winner's models come from, and what best.yaml can reproduce ----------


def test_a_cloned_trials_table_shows_its_lineage_not_its_pre_clone_rows(tmp_path: Path) -> None:
    """PBT cloned trial 1 onto trial 0 after generation 1: result.json kept trial 1's own generation 0-1 lines."""
    import pandas as pd
    from ray import tune

    sweep = plan(smoke_data(space={"train.lr": {"choice": [0.01, 0.1]}}))
    lineage = TrialState([(0, {"train.lr": 0.1}), (2, {"train.lr": 0.01})]).after(0, 0.6).after(1, 0.7).after(2, 0.8)
    (tmp_path / "trial_state.json").write_text(lineage.to_json())
    frame = pd.DataFrame({"generation": [0, 1, 2], METRIC: [0.2, 0.3, 0.8]})  # 0.2, 0.3: before the clone
    result = _result(
        tmp_path / "run_trial_abcde_00001_1",
        {"trial_id": "abcde_00001", "config": {"train.lr": 0.01}},
        tune.Checkpoint.from_directory(str(tmp_path)),
        frame,
    )
    row = trial_row(sweep, result)
    assert row.by_generation == {0: 0.6, 1: 0.7, 2: 0.8} and row.values == {"train.lr": 0.01}


def test_pbt_best_yaml_and_output_say_it_carries_the_final_values_only(tmp_path: Path) -> None:
    from orchestrator.cli.sweeps.sweep_results import best_notes, write_sweep_outputs

    best = TrialRow("a", "s-a", {"train.lr": 0.01}, {0: 0.5, 1: 0.6}, "completed")
    pbt = plan(smoke_data(scheduler="pbt", perturbation_interval=1, space={"train.lr": {"uniform": [0.01, 0.1]}}))
    write_sweep_outputs(tmp_path / "pbt", [], best, pbt)
    text = (tmp_path / "pbt" / "best.yaml").read_text()
    assert "# best.yaml carries the best trial's final values only" in text and "every generation" in text
    assert yaml.safe_load(text)["train"]["lr"] == 0.01
    assert any("final values only" in line for line in best_notes(pbt))
    asha = plan(smoke_data())
    write_sweep_outputs(tmp_path / "asha", [], best, asha)
    assert "final values only" not in (tmp_path / "asha" / "best.yaml").read_text()
    assert not any("final values only" in line for line in best_notes(asha))


def test_best_yaml_names_the_sweeps_workspace_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """best.yaml kept `run.workspace: ws` as written, so `relay run /abs/sweep/best.yaml` from another folder started
    a new, empty workspace there: no cache hits, the winner registered in another MLflow store."""
    from orchestrator.cli.sweeps.sweep_results import write_sweep_outputs

    monkeypatch.chdir(tmp_path)
    best = TrialRow("a", "s-a", {"train.lr": 0.01}, {0: 0.5, 1: 0.6}, "completed")
    sweep = plan(smoke_data() | {"run": {"workspace": "ws", "executor": "local"}})
    write_sweep_outputs(tmp_path / "sweep", [], best, sweep)
    written = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    assert written["run"] == {"workspace": str(tmp_path / "ws"), "executor": "local"}
    assert str(Path(sweep.output)).startswith(written["run"]["workspace"])  # where the sweep itself wrote


def test_best_yaml_names_the_workspace_the_sweeps_environment_gave(tmp_path: Path, monkeypatch) -> None:
    """A sweep whose workspace came from $RELAY_WORKSPACE (or the default) wrote best.yaml with none, so its rerun
    from another folder, or another shell, started a new workspace."""
    from orchestrator.cli.sweeps.sweep_results import write_sweep_outputs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RELAY_WORKSPACE", "relws")
    best = TrialRow("a", "s-a", {"train.lr": 0.01}, {0: 0.5, 1: 0.6}, "completed")
    write_sweep_outputs(tmp_path / "sweep", [], best, plan(smoke_data()))
    written = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    assert written["run"]["workspace"] == str(tmp_path / "relws")


# --- 6. how Relay picks its best -------------------------------------------------------------


def test_a_line_under_the_table_says_how_relays_best_is_picked() -> None:
    """Ray Tune's status box named a trial stopped early, Relay's table another, and nothing said why."""
    from orchestrator.cli.sweeps.sweep_results import best_notes

    [line] = best_notes(plan(smoke_data()))
    assert "furthest generation" in line and f"best final {METRIC} (max)" in line and "Ray Tune" in line
    assert (
        "listed in Ray Tune's trial order (their number), and a tie goes to the trial Ray Tune numbered first" in line
    )


# --- 7. a trial a Ctrl-C cut off is interrupted, not stopped early --------------------------------


class _Session:
    """Stands in for RayExecutor: no Ray started."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass


def test_a_trial_cut_off_by_ctrl_c_is_interrupted_and_the_sweep_can_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Ctrl-C Tune saves the running trial as unfinished, then terminates it, so every trial read TERMINATED:
    a trial cut off during its last generations was `stopped early` (STOPPED in MLflow) and the sweep exited 0."""
    import pandas as pd

    from orchestrator.tracking.common import TAG_STATUS
    from orchestrator.tune import sweep

    sweep_plan = plan(smoke_data(space={"train.lr": {"choice": [0.01, 0.1]}}))  # 2 generations a trial
    finished = _result(
        tmp_path / "run_trial_abcde_00000_0",
        {"trial_id": "abcde_00000", "config": {"train.lr": 0.1}, "done": True},
        frame=pd.DataFrame({"generation": [0, 1], METRIC: [0.5, 0.6]}),
    )
    stopped = _result(  # its scheduler stopped it: Tune marked the result it stopped it on
        tmp_path / "run_trial_abcde_00001_1",
        {"trial_id": "abcde_00001", "config": {"train.lr": 0.01}, "done": True},
        frame=pd.DataFrame({"generation": [0], METRIC: [0.2]}),
    )
    cut = _result(  # running its generation 1 at the Ctrl-C
        tmp_path / "run_trial_abcde_00002_2",
        {"trial_id": "abcde_00002", "config": {"train.lr": 0.1}, "done": False},
        frame=pd.DataFrame({"generation": [0], METRIC: [0.4]}),
    )

    class Grid(list):  # what tuner.fit() returns after the Ctrl-C: every trial TERMINATED
        num_terminated, num_errors = 3, 0

    class Tuner:
        def fit(self) -> Grid:
            return Grid([finished, stopped, cut])

    closed: dict[str, tuple] = {}

    class Sweeps:
        def close_trial(self, run_id: str, status: str, tags: dict, interrupted: bool = False) -> None:
            closed[run_id.rsplit("-", 1)[-1]] = (status, tags[TAG_STATUS], tags["relay.tune.status"], interrupted)

    monkeypatch.setattr(sweep, "RayExecutor", _Session)
    monkeypatch.setattr(sweep, "_sized_tuner", lambda plan, resume: (Tuner(), 3))
    rows, done = sweep.run_sweep(sweep_plan, False, Sweeps())
    assert [row.status for row in rows] == ["completed", "stopped early", "interrupted"]
    assert not done  # the CLI exits 130 and prints the --resume command, and writes no best.yaml
    assert closed == {
        "abcde_00000": ("FINISHED", "FINISHED", "completed", False),
        "abcde_00001": ("KILLED", "STOPPED", "stopped early", False),
        "abcde_00002": ("KILLED", "INTERRUPTED", "interrupted", True),  # its cut-off stage runs end KILLED
    }


# --- 8. nothing of a trial's in the temporary folder while Tune may end it -------------------------


def test_a_trial_holds_no_copies_folder_while_it_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tune pauses a trial inside its report and ends its process without letting it unwind: an SHA or ASHA
    sweep left an empty /tmp/relay-copies-* behind for a paused trial."""
    from types import SimpleNamespace

    from ray import tune

    from orchestrator.tune import trial

    sweep = plan(smoke_data(space={"train.lr": {"choice": [0.01, 0.1]}}))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    copies_while_running, copies_while_reporting = [], []

    class FakeRunner:
        def __init__(self, store, executor, tracker, code_version, seed, copies, continued_by=None) -> None:
            self.copies = copies

        def run(self, pipeline, run_id, stop_after=None) -> Any:
            copies_while_running.append(self.copies.is_dir())
            return SimpleNamespace(manifests={stop_after: SimpleNamespace(metrics={"balanced_accuracy": 0.5})})

    ended: list[str] = []

    class FakeTracker:
        def start_pipeline(self, *args: Any, **kwargs: Any) -> None:
            pass

        def end_pipeline(self, status: str) -> None:
            ended.append(status)

    def report(metrics: dict, checkpoint: Any = None) -> None:
        copies_while_reporting.append(sorted(p.name for p in scratch.glob("relay-copies-*")))
        raise SystemExit(0)  # Tune pauses the trial here

    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "abcde_00000"))
    monkeypatch.setattr(tune, "report", report)
    without_ray_or_mlflow(monkeypatch, FakeTracker(), FakeRunner)
    with pytest.raises(SystemExit):
        trial.run_trial({"train.lr": 0.1}, sweep)
    assert copies_while_running == [True]  # the tracker had its copies folder while the stages ran
    assert copies_while_reporting == [[]]
    assert ended == ["PAUSED"]
