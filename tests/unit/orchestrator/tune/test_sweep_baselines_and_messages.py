"""What a sweep leaves out of its trials and says about it, and the lines `relay tune` prints.

- A pipeline with a comparison branch (KE's compute-matched baseline, a student trained without its
  teacher) ran each trial up to its last generation's metric stage: the baseline never ran, nothing
  said so, and the trial's ledger read STOPPED though it ran every generation.
- The command printed to start or continue a sweep was not shell-quoted; `set tune.name` was offered
  where it could not work, and a folder holding another sweep was called one of "files that are not
  a sweep's"; best.yaml claimed a tie under every sweep; an unknown key's problem showed a sampled value.
- A PBT sweep that fits one trial at a time perturbs nothing, and Ray Tune's reuse_actors advice is
  not one a Relay user can take.
"""

from __future__ import annotations

import argparse
import json
import shlex
import warnings
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.pipeline_files import load_pipeline_file
from orchestrator.cli.sweeps.sweep_folder import STORE_ENVS, check_output_free, check_resume
from orchestrator.cli.sweeps.sweep_results import _again, write_sweep_outputs
from orchestrator.config import TuneSettings
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner
from orchestrator.errors import ConfigError
from orchestrator.tune.console_filters import REUSE_ACTORS_ADVICE, no_reuse_actors_advice
from orchestrator.tune.plan import left_out_note, plan_sweep
from orchestrator.tune.sweep import lone_population_warning
from orchestrator.tune.trial import scheduled_pipeline
from orchestrator.tune.trial_rows import TrialRow
from orchestrator.tune.trials_table import tied_with, trial_records
from tests.unit.orchestrator.engine.toy import RecordingTracker
from tests.unit.orchestrator.tune.test_tune_config import plan, problems, smoke_data

ROOT = Path(__file__).resolve().parents[4]
KE = ROOT / "pipelines" / "configs" / "ke_digits.yaml"
SPLIT_RATE = "{ke.split_rate: {uniform: [0.3, 0.8]}}"


def ke_plan(tmp_path: Path, *overrides: str, space: str = SPLIT_RATE):
    tune = f"tune={{metric: evaluate/balanced_accuracy, num_samples: 1, scheduler: none, space: {space}}}"
    small = ("ke.generations=2", "train.steps=2", "train.warmup_steps=1", "train.report_every=1")
    workspace = f"run.workspace={tmp_path / 'ws'}"  # the trial's store: never the default ./relay-workspace
    spec, config, data = load_pipeline_file(str(KE), [*small, workspace, tune, *overrides], None)
    return plan_sweep(data, config, spec.build, "code", output=str(tmp_path / "sweep"), source="test")


def test_a_trial_leaves_the_baseline_out_and_the_sweep_says_why(tmp_path: Path) -> None:
    sweep = ke_plan(tmp_path)
    assert sweep.left_out == ("baseline/train", "baseline/evaluate")
    assert sweep.pipeline_kind == "ke"
    pipeline, _ = scheduled_pipeline(sweep, [(0, {"ke.split_rate": 0.5})])
    names = [stage.name for stage in pipeline.stages]
    assert "baseline/train" not in names and "baseline/evaluate" not in names and "g01/evaluate" in names
    note = left_out_note(sweep)
    assert "baseline/train, baseline/evaluate" in note and "evaluate/balanced_accuracy" in note
    assert "best.yaml" in note


def test_a_pipeline_without_a_baseline_leaves_nothing_out(tmp_path: Path) -> None:
    sweep = ke_plan(tmp_path, "ke.compute_matched_baseline=false")
    assert sweep.left_out == () and left_out_note(sweep) is None


def test_a_trial_that_ran_every_generation_ends_finished(tmp_path: Path) -> None:
    """A trial runs each generation up to its metric stage, as run_trial does; after the last one its ledger
    reads FINISHED (the baseline it leaves out is not an unfinished stage), not STOPPED."""
    sweep = ke_plan(tmp_path)
    pipeline, _ = scheduled_pipeline(sweep, [(0, {"ke.split_rate": 0.5})])
    store = ArtifactStore(sweep.store_uri)
    statuses = [
        Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0).run(pipeline, "t-0", stop_after=stage).status
        for stage in sweep.report_stages
    ]
    assert [status.value for status in statuses] == ["STOPPED", "FINISHED"]


def args(output: str | None = None, overrides: tuple[str, ...] = ()) -> argparse.Namespace:
    return argparse.Namespace(
        config="/work/my configs/smoke.yaml", overrides=list(overrides), output=output, resume=False
    )


def test_the_command_that_starts_a_sweep_again_is_quoted_for_a_shell(monkeypatch) -> None:
    for name in STORE_ENVS:
        monkeypatch.delenv(name, raising=False)
    space = "tune.space.model.name={choice: [small_cnn, resnet18]}"
    again = _again(args("/tmp/out dir", (space, "train.steps=10")))
    assert shlex.split(again) == [
        "relay",
        "tune",
        "/work/my configs/smoke.yaml",
        space,
        "train.steps=10",
        "--output",
        "/tmp/out dir",
    ]


def test_an_existing_sweep_in_an_output_folder_is_not_told_to_set_tune_name(tmp_path: Path) -> None:
    sweep = plan(smoke_data(name="sha1"), output=tmp_path / "out")
    with pytest.raises(ConfigError) as info:
        check_resume(args(str(tmp_path / "out")), sweep, exists=True)
    assert "tune.name" not in info.value.problems[0] and "another --output DIR" in info.value.problems[0]
    default = plan(smoke_data(name="sha1"))
    with pytest.raises(ConfigError) as info:
        check_resume(args(), default, exists=True)
    assert "tune.name" in info.value.problems[0]


def test_an_output_folder_holding_another_sweep_names_it(tmp_path: Path) -> None:
    output = tmp_path / "out"
    (output / "ray" / "sha1").mkdir(parents=True)
    (output / "ray" / "sha1" / "tuner.pkl").write_bytes(b"")  # what Ray Tune's Tuner.can_restore looks for
    (output / "best.yaml").write_text("x: 1\n")
    from orchestrator.tune.sweep import sweeps_in

    assert sweeps_in(output) == ["sha1"]
    sweep = plan(smoke_data(name="other"), output=output)
    with pytest.raises(ConfigError) as info:
        check_output_free(args(str(output)), sweep, False, sweeps_in(output))
    [problem] = info.value.problems
    assert "holds sweep sha1, not one named other" in problem and "tune.name=sha1" in problem
    assert "not a sweep's" not in problem


def row(trial_id: str, values: dict[int, float], started: int) -> TrialRow:
    return TrialRow(trial_id, f"s-{trial_id}", {"train.lr": 0.1}, values, "completed", started)


def test_best_yaml_names_a_tie_only_when_there_is_one(tmp_path: Path) -> None:
    sweep = plan(smoke_data(), output=tmp_path)
    first, second = row("a", {0: 0.5, 1: 0.7}, 0), row("b", {0: 0.4, 1: 0.6}, 1)
    write_sweep_outputs(tmp_path, trial_records([first, second]), first, sweep, tied_with([first, second], first))
    header = (tmp_path / "best.yaml").read_text().splitlines()[1]
    assert "tie" not in header and "best trial a of sweep" in header
    tie = row("c", {0: 0.1, 1: 0.7}, 2)
    tied = [r.trial_id for r in tied_with([first, second, tie], first)]
    write_sweep_outputs(tmp_path, trial_records([first, tie]), first, sweep, tied)
    header = (tmp_path / "best.yaml").read_text().splitlines()[1]
    assert "tied with c; a tie goes to the trial Ray Tune numbered first" in header
    assert "tune" not in yaml.safe_load((tmp_path / "best.yaml").read_text())


def test_an_unknown_key_is_refused_without_a_sampled_value() -> None:
    [problem] = problems(smoke_data(space={"train.nosuch": {"uniform": [0.0, 1.0]}}))
    assert problem.startswith("tune.space.train.nosuch: unknown key") and "value 0.0" not in problem


def test_a_key_that_adds_or_drops_a_baseline_is_refused_for_what_it_does(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ke_plan(tmp_path, space="{ke.compute_matched_baseline: {choice: [true, false]}}")
    [problem] = info.value.problems
    assert "removes baseline/train, baseline/evaluate" in problem and "time axis" not in problem


def settings(**changes) -> TuneSettings:
    base = {"metric": "evaluate/balanced_accuracy", "space": {"train.lr": {"uniform": [0.01, 0.1]}}}
    return TuneSettings(**{**base, **changes})


def test_pbt_one_trial_at_a_time_is_warned_about_with_what_to_change() -> None:
    warning = lone_population_warning(settings(scheduler="pbt"), concurrency=1, trials=4, cpus=2)
    assert "runs 1 trial at a time" in warning and "perturb nothing" in warning
    assert "run.num_cpus" in warning and "tune.trial_cpus" in warning and "max_concurrent_trials" in warning
    assert lone_population_warning(settings(scheduler="pbt"), concurrency=2, trials=4, cpus=4) is None
    assert lone_population_warning(settings(scheduler="asha"), concurrency=1, trials=4, cpus=2) is None


def test_ray_tunes_reuse_actors_advice_is_hidden_and_other_warnings_pass() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with no_reuse_actors_advice():
            warnings.warn(f"{REUSE_ACTORS_ADVICE} as well as implementing `reset_config` for Trainable.", stacklevel=1)
            warnings.warn("something else", stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_a_trial_records_its_sweep_for_relay_runs(tmp_path: Path) -> None:
    from orchestrator.tune.plan import sweep_record

    sweep = ke_plan(tmp_path)
    assert json.loads(json.dumps(sweep_record(sweep))) == {
        "sweep": sweep.name,
        "folder": str(tmp_path / "sweep"),
        "pipeline": "ke",
    }


def test_the_command_names_the_stores_this_shell_chose(monkeypatch) -> None:
    """Pasted into a shell without the first one's RELAY_WORKSPACE, `--resume` went on in ./relay-workspace."""
    for name in STORE_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RELAY_WORKSPACE", "/data/my ws")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    words = shlex.split(_again(args("/data/out")))
    assert words[:2] == ["RELAY_WORKSPACE=/data/my ws", "MLFLOW_TRACKING_URI=http://mlflow:5000"]
    assert words[2:] == ["relay", "tune", "/work/my configs/smoke.yaml", "--output", "/data/out"]
