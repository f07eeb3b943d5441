"""The `tune:` section and the pure parts of orchestrator.tune (space, plan, trial, sweep): parsing, bad input, clipping, best.yaml, schedules."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import SearchDomain, TuneSettings, load_yaml, validate_config
from orchestrator.errors import ConfigError
from orchestrator.tune.plan import SweepPlan, fit_concurrency, plan_sweep
from orchestrator.tune.space import best_config, clip_values, param_space, total_trials
from orchestrator.tune.trial import TrialState, ending_status, scheduled_pipeline
from orchestrator.tune.trial_fit import trial_fit_problem
from orchestrator.tune.trial_rows import TrialRow, trial_row
from orchestrator.tune.trials_table import best_row, tied_with, trials_table
from pipelines.builders import crest
from pipelines.registry import PIPELINES

ROOT = Path(__file__).resolve().parents[4]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
METRIC = "evaluate/balanced_accuracy"


def smoke_data(**tune_changes) -> dict:
    data = load_yaml(SMOKE)
    data["tune"] = {**data["tune"], **tune_changes}
    return data


def plan(data: dict, output: Path | None = None) -> SweepPlan:
    config = validate_config(crest.CrestConfig, data)
    return plan_sweep(data, config, crest.build, "code", output=str(output) if output else None, source="test")


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        plan(data)
    return info.value.problems


# --- parsing ---------------------------------------------------------------------------


def test_smoke_tune_section_parses_into_domains() -> None:
    settings = validate_config(crest.CrestConfig, load_yaml(SMOKE)).tune
    assert settings.scheduler == "asha" and settings.num_samples == 4 and settings.metric == METRIC
    assert settings.space["augment.strong.num_ops"].kind == "randint"
    assert settings.space["augment.strong.num_ops"].args == (1, 3)
    assert settings.space["crest.alpha"].args == [2, 3]


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_registered_pipeline_accepts_a_tune_section(name: str) -> None:
    spec = PIPELINES[name]
    section = {"metric": METRIC, "space": {"train.lr": {"loguniform": [0.01, 0.1]}}}
    assert (
        validate_config(spec.config_model, {"pipeline": name, "tune": section}).tune.space["train.lr"].kind
        == "loguniform"
    )


def test_randint_is_inclusive_and_maps_to_rays_exclusive_high() -> None:
    space = param_space({"n": SearchDomain(randint=(1, 3)), "s": SearchDomain(choice=["a", "b"])})
    assert (space["n"].lower, space["n"].upper) == (1, 4)
    assert space["s"].categories == ["a", "b"]


def test_total_trials_multiplies_grids() -> None:
    settings = TuneSettings(metric=METRIC, num_samples=2, space={"a": {"grid": [1, 2, 3]}, "b": {"grid": [1, 2]}})
    assert total_trials(settings) == 12


def test_plan_holds_the_evaluate_stage_of_every_generation(tmp_path: Path) -> None:
    sweep = plan(smoke_data(name="s1") | {"crest": {"generations": 3, "alignment": True}}, tmp_path / "out")
    assert sweep.report_stages == ("g00/evaluate", "g01/evaluate", "g02/evaluate")
    assert sweep.name == "s1" and sweep.metric_name == "balanced_accuracy"
    assert "tune" not in sweep.base
    assert sweep.experiment_path == (tmp_path / "out" / "ray" / "s1").resolve()


# --- bad input: one clear message each -----------------------------------------------------


def test_unknown_key_in_the_space_names_the_valid_keys() -> None:
    [problem] = problems(smoke_data(space={"augment.strong.nm_ops": {"randint": [1, 3]}}))
    assert "nm_ops" in problem and "did you mean 'num_ops'" in problem


def test_empty_choice() -> None:
    with pytest.raises(ConfigError, match="choice is empty"):
        validate_config(crest.CrestConfig, smoke_data(space={"crest.schedule": {"choice": []}}))


def test_low_above_high() -> None:
    with pytest.raises(ConfigError, match="low 0.1 > high 0.01"):
        validate_config(crest.CrestConfig, smoke_data(space={"train.lr": {"uniform": [0.1, 0.01]}}))


@pytest.mark.parametrize("key", ["augment.strong.num_ops", "augment.strong.magnitude"])
def test_randaugment_n_and_m_need_integer_domains(key: str) -> None:
    [problem] = problems(smoke_data(space={key: {"uniform": [1, 9]}}))
    assert f"{key} is an integer setting" in problem and "randint" in problem


def test_out_of_range_end_is_caught_before_any_trial() -> None:
    [problem] = problems(smoke_data(space={"augment.strong.magnitude": {"randint": [1, 20]}}))
    assert "must be <= 10" in problem and "value 20" in problem


def test_a_key_that_changes_the_dag_is_refused() -> None:
    [problem] = problems(smoke_data(space={"crest.generations": {"choice": [2, 3]}}))
    assert "changes the number of generations (2 -> 3; generations are the sweep's time axis" in problem


def test_metric_of_no_stage_lists_the_roles() -> None:
    [problem] = problems(smoke_data(metric="foo/balanced_accuracy"))
    assert "'foo' is not a stage role" in problem and "evaluate" in problem


@pytest.mark.parametrize("metric", ["evaluate/balanced_acc", "evaluate/nosuch"])
def test_a_metric_name_the_stage_never_reports_is_refused_before_any_trial(metric: str) -> None:
    """A typo after the role used to pass validation and fail each trial when it first reported."""
    [problem] = problems(smoke_data(metric=metric))
    assert f"not {metric.split('/')[1]!r}" in problem and "balanced_accuracy" in problem and "recall/*" in problem


@pytest.mark.parametrize("metric", ["evaluate/tail_recall", "evaluate/recall/3", "evaluate/accuracy"])
def test_every_metric_the_evaluate_stage_reports_is_accepted(metric: str) -> None:
    assert plan(smoke_data(metric=metric)).metric_name == metric.split("/", 1)[1]


def test_metric_without_a_role() -> None:
    with pytest.raises(ConfigError, match="<stage role>/<metric>"):
        validate_config(crest.CrestConfig, smoke_data(metric="balanced_accuracy"))


def test_every_space_problem_is_reported_at_once() -> None:
    found = problems(
        smoke_data(
            space={"augment.strong.nm_ops": {"randint": [1, 3]}, "augment.strong.magnitude": {"uniform": [1, 9]}}
        )
    )
    assert len(found) == 2


def test_incompatible_scheduler_and_search() -> None:
    with pytest.raises(ConfigError, match="optuna cannot run grid"):
        validate_config(crest.CrestConfig, smoke_data(search="optuna", space={"crest.alpha": {"grid": [1, 2]}}))
    with pytest.raises(ConfigError, match="use search random"):
        validate_config(crest.CrestConfig, smoke_data(search="optuna", scheduler="pbt"))
    with pytest.raises(ConfigError, match="scheduler sha pauses trials.*use search random"):
        validate_config(crest.CrestConfig, smoke_data(search="optuna", scheduler="sha"))
    with pytest.raises(ConfigError, match="'asha', 'sha', 'pbt', 'pb2' or 'none'"):
        validate_config(crest.CrestConfig, smoke_data(scheduler="hyperband"))


def test_cli_rejects_bad_space_with_exit_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(smoke_data(space={"augment.strong.num_ops": {"uniform": [1, 3]}})))
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    assert main(["tune", str(config)]) == 2
    assert "augment.strong.num_ops is an integer setting" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()


def test_cli_without_a_tune_section_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_yaml(SMOKE)
    data.pop("tune")
    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    assert main(["tune", str(config)]) == 2


# --- clipping, schedules, best.yaml -----------------------------------------------------------


SPACE = {
    "augment.strong.num_ops": SearchDomain(randint=(1, 3)),
    "augment.strong.magnitude": SearchDomain(randint=(1, 10)),
    "crest.t_min": SearchDomain(uniform=(0.3, 0.9)),
    "crest.schedule": SearchDomain(choice=["linear", "cosine", "step"]),
    "crest.alpha": SearchDomain(choice=[1.0, 2.0, 3.0]),
}


def test_clip_discretizes_n_and_m_to_their_ranges() -> None:
    clipped = clip_values(
        {
            "augment.strong.num_ops": 0.6,
            "augment.strong.magnitude": 31.4,
            "crest.t_min": 1.08,
            "crest.schedule": "cosine",
            "crest.alpha": 2.4,
        },
        SPACE,
    )
    assert clipped == {
        "augment.strong.num_ops": 1,
        "augment.strong.magnitude": 10,
        "crest.t_min": 0.9,
        "crest.schedule": "cosine",
        "crest.alpha": 2.0,
    }
    assert isinstance(clipped["augment.strong.magnitude"], int)
    assert clip_values({"augment.strong.num_ops": 2.6}, SPACE) == {"augment.strong.num_ops": 3}
    assert clip_values({"crest.schedule": "nope"}, SPACE) == {"crest.schedule": "linear"}


def test_best_config_applies_values_drops_tune_and_validates() -> None:
    data = load_yaml(SMOKE)
    best = best_config(data, {"augment.strong.num_ops": 3, "crest.schedule": "step"})
    assert "tune" not in best and "tune" in data
    config = validate_config(crest.CrestConfig, best)
    assert config.augment.strong.num_ops == 3 and config.crest.schedule == "step"
    assert config.train.steps == data["train"]["steps"]


def test_best_row_compares_trials_that_ran_every_generation() -> None:
    rows = [
        TrialRow("a", "s-a", {}, {0: 0.9}, "stopped early"),
        TrialRow("b", "s-b", {}, {0: 0.5, 1: 0.6}, "completed"),
        TrialRow("c", "s-c", {}, {0: 0.4, 1: 0.7}, "completed"),
    ]
    assert best_row(rows, "max").trial_id == "c"
    assert best_row(rows, "min").trial_id == "b"
    assert best_row([], "max") is None
    table = trials_table(rows, [], 2, rows[2])
    assert "c *" in table and "stopped early" in table and "0.7" in table


def test_a_trial_that_failed_or_ended_on_nan_is_never_the_best() -> None:
    """A learning rate that scored best at generation 0 and diverged at 1 was named best over the trials a
    scheduler stopped at 0; a NaN final value won under max and min alike."""
    diverged = TrialRow("a", "s-a", {}, {0: 0.9}, "error")
    nan = TrialRow("n", "s-n", {}, {0: float("nan")}, "stopped early")
    stopped = TrialRow("b", "s-b", {}, {0: 0.5}, "stopped early")
    tied = TrialRow("t", "s-t", {}, {0: 0.5}, "error")
    assert best_row([diverged, nan, stopped, tied], "max").trial_id == "b"
    assert best_row([diverged, nan, stopped, tied], "min").trial_id == "b"
    assert tied_with([diverged, nan, stopped, tied], stopped) == []
    assert best_row([diverged, nan], "max") is None


def test_trials_csv_keeps_its_columns_when_a_choice_is_a_list(tmp_path: Path) -> None:
    import csv

    from orchestrator.cli.sweeps.sweep_results import write_sweep_outputs
    from orchestrator.tune.trials_table import trial_records

    rows = [
        TrialRow("a", "s-a", {"model.widths": [16, 32], "train.lr": 0.1}, {0: 0.5}, "completed"),
        TrialRow("b", "s-b", {"model.widths": [8, 8, 8], "train.lr": 0.2}, {0: 0.6, 1: 0.7}, "completed"),
    ]
    files = write_sweep_outputs(tmp_path, trial_records(rows), None, None)
    assert files == [str(tmp_path / "trials.csv"), str(tmp_path / "trials.json")]
    with (tmp_path / "trials.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["model.widths"] for row in table] == ["[16, 32]", "[8, 8, 8]"]
    assert [row["train.lr"] for row in table] == ["0.1", "0.2"]
    assert [(row["g00"], row["g01"]) for row in table] == [("0.5", ""), ("0.6", "0.7")]


def test_trials_csv_and_json_show_floats_as_the_values_they_stand_for(tmp_path: Path) -> None:
    """trials.csv showed 0.16000000000000003 for a value PBT perturbed (0.2 * 0.8) and 0.32999999999999996 for
    a balanced accuracy (a mean of per-class recalls)."""
    import csv
    import json

    from orchestrator.cli.sweeps.sweep_results import write_sweep_outputs
    from orchestrator.tune.trials_table import trial_records

    perturbed, metric = 0.2 * 0.8, (0.3 + 0.36) / 2
    assert (repr(perturbed), repr(metric)) == ("0.16000000000000003", "0.32999999999999996")  # the noise
    sampled = 0.6821770123928727  # a uniform sample: all its digits are the sampler's
    values = {"train.lr": perturbed, "crest.t_min": sampled, "train.weight_decay": 1e-06, "crest.schedule": "step"}
    rows = [TrialRow("a", "s-a", values, {0: metric, 1: 0.123456789012, 2: 0.5 + 1e-9}, "completed")]
    write_sweep_outputs(tmp_path, trial_records(rows), None, None)
    with (tmp_path / "trials.csv").open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["train.lr"], row["g00"]) == ("0.16", "0.33")
    assert (row["crest.t_min"], row["train.weight_decay"], row["crest.schedule"]) == ("0.682177012393", "1e-06", "step")
    assert (row["g01"], row["g02"]) == ("0.123456789012", "0.500000001")  # 12 digits: what a metric can resolve
    [record] = json.loads((tmp_path / "trials.json").read_text())
    assert (record["g00"], record["g02"]) == (0.33, 0.500000001)
    assert (record["train.lr"], record["crest.t_min"]) == (perturbed, sampled)  # a trial's config is read from here
    assert rows[0].values["crest.t_min"] == sampled  # best.yaml and the MLflow tags take the values themselves


def test_the_sweep_seed_is_the_configs_seed_when_tune_seed_is_left_out() -> None:
    """MLflow logged `tune.seed` as None for a sweep seeded by the config's seed."""
    assert plan(smoke_data() | {"seed": 7}).settings.seed == 7
    assert plan(smoke_data(seed=3) | {"seed": 7}).settings.seed == 3


def test_the_sweep_run_logs_the_seed_it_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli.sweeps import tune as cli_tune

    logged: dict = {}

    class StopAtStart:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def start(
            self, sweep, pipeline_name, params, settings_text, output="", resume=False, pipeline_kind=None
        ) -> None:
            logged.update(params)
            raise ConfigError(["stopped by the test once the sweep's params are known"], "test")

    monkeypatch.setattr(cli_tune, "SweepTracker", StopAtStart)
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(smoke_data() | {"seed": 7}))
    assert main(["tune", str(config)]) == 2
    assert logged["tune.seed"] == 7


def test_trial_state_continues_mutated_values_from_the_next_generation() -> None:
    state = TrialState([(0, {"n": 1})], next_generation=2)
    assert state.continue_with({"n": 1}) is state
    mutated = state.continue_with({"n": 3})
    assert mutated.segments == [(0, {"n": 1}), (2, {"n": 3})]
    assert TrialState.from_json(mutated.to_json()) == mutated


def test_trial_state_keeps_what_each_generation_reported_through_a_mutation() -> None:
    state = TrialState([(0, {"n": 1})]).after(0, 0.5).after(1, 0.75)
    assert state.next_generation == 2 and state.reported == {0: 0.5, 1: 0.75}
    mutated = state.continue_with({"n": 3})
    assert mutated.reported == {0: 0.5, 1: 0.75}
    assert TrialState.from_json(mutated.to_json()) == mutated
    older = '{"segments": [[0, {"n": 1}]], "next_generation": 1}'  # a checkpoint written before `reported`
    assert TrialState.from_json(older) == TrialState([(0, {"n": 1})], 1)


@pytest.mark.parametrize(
    ("error", "generations_left", "status"),
    [
        (SystemExit(0), 2, "PAUSED"),  # Tune paused or stopped the trial inside its report
        (SystemExit(None), 1, "PAUSED"),
        (SystemExit(0), 0, "FINISHED"),  # cut off at the last report: every generation ran
        (SystemExit(1), 2, "FAILED"),
        (RuntimeError("boom"), 2, "FAILED"),
        (KeyboardInterrupt(), 2, "FAILED"),
    ],
)
def test_a_trial_cut_off_by_tune_is_paused_not_failed(error: BaseException, generations_left: int, status: str) -> None:
    assert ending_status(error, generations_left) == status


def test_a_generation_that_tunes_result_file_lost_is_read_from_the_trials_checkpoint(tmp_path: Path) -> None:
    """Tune's result.json of a resumed trial can lack its first lines (see TrialState); its checkpoint cannot."""
    import pandas as pd
    from ray import tune

    sweep_plan = plan(smoke_data())
    state = TrialState([(0, {"train.lr": 0.05})]).after(0, 0.33).after(1, 0.285)
    (tmp_path / "trial_state.json").write_text(state.to_json())
    frame = pd.DataFrame({"generation": [1], METRIC: [0.285]})  # generation 0's line lost
    result = tune.Result(
        metrics={"trial_id": "abcde_00001", "config": {"train.lr": 0.05}, "done": True},
        checkpoint=tune.Checkpoint.from_directory(str(tmp_path)),
        error=None,
        path=str(tmp_path / "run_trial_abcde_00001_1"),
        metrics_dataframe=frame,
    )
    row = trial_row(sweep_plan, result)
    assert row.by_generation == {0: 0.33, 1: 0.285} and row.status == "completed"
    frame_only = tune.Result(result.metrics, None, None, result.path, metrics_dataframe=frame)
    assert trial_row(sweep_plan, frame_only).status == "stopped early"  # what the table said before


def test_scheduled_pipeline_takes_each_generation_from_the_values_in_force(tmp_path: Path) -> None:
    data = smoke_data() | {"crest": {"generations": 3}}
    sweep = plan(data, tmp_path)
    segments = [(0, {"augment.strong.magnitude": 3}), (1, {"augment.strong.magnitude": 9})]
    pipeline, latest = scheduled_pipeline(sweep, segments)
    magnitude = {s.name: s.params["augment"].strong.magnitude for s in pipeline.stages if s.name.endswith("/train")}
    assert magnitude == {"g00/train": 3, "g01/train": 9, "g02/train": 9}
    assert latest.augment.strong.magnitude == 9
    same = {
        s.name: s.params
        for s in crest.build(
            validate_config(crest.CrestConfig, {**sweep.base, "augment": {"strong": {"magnitude": 3}}})
        ).stages
    }
    assert pipeline.stage("g00/train").params == same["g00/train"]  # same params: the cached stage is reused


@pytest.mark.parametrize(
    ("cpus", "gpus", "stage_gpus", "requested", "expected"),
    [
        (2, 0, 0.0, None, 1),  # 1-CPU stages + 0.1 CPU driver: one trial on 2 cores
        (8, 0, 0.0, None, 7),
        (8, 0, 0.0, 2, 2),  # the user may ask for fewer
        (2, 0, 0.0, 5, 1),  # never more than fits
        (16, 2, 1.0, None, 2),  # GPUs bound it
    ],
)
def test_concurrency_fits_the_cluster(
    cpus: int, gpus: int, stage_gpus: float, requested: int | None, expected: int
) -> None:
    data = load_yaml(SMOKE) | {"resources": {"train": {"num_gpus": stage_gpus}}}
    pipeline = crest.build(validate_config(crest.CrestConfig, data))
    assert fit_concurrency({"CPU": cpus, "GPU": gpus}, pipeline, 0.1, requested, trials=10) == expected
    assert fit_concurrency({"CPU": 64, "GPU": 64}, pipeline, 0.1, None, trials=3) == 3  # nor more than trials


@pytest.mark.parametrize(
    ("resources", "trial_cpus", "widest"),
    [
        ({}, 0.1, None),  # 1-CPU stages beside a 0.1-CPU driver fit 2 CPUs
        ({"train": {"workers": 2}}, 0.1, "g00/train"),  # Ray Train waits for both workers: 2.1 > 2
        ({"pseudo_label": {"workers": 2}}, 0.1, None),  # one labeling actor is enough to start
        ({"pseudo_label": {"workers": 2, "num_cpus": 2}}, 0.1, "g00/pseudo_label"),  # but not one of 2 CPUs
        ({}, 1.5, "data/split"),  # a driver that holds 1.5 CPUs leaves no stage room (the first widest is named)
    ],
)
def test_a_trial_that_could_never_start_on_the_local_ray_is_named(
    resources: dict, trial_cpus: float, widest: str | None
) -> None:
    pipeline = crest.build(validate_config(crest.CrestConfig, load_yaml(SMOKE) | {"resources": resources}))
    problem = trial_fit_problem(pipeline, trial_cpus, cpus=2)
    if widest is None:
        assert problem is None
    else:
        assert problem is not None and f"beside {widest}'s" in problem and "local Ray has 2" in problem
        assert "lower tune.trial_cpus" in problem and "raise run.num_cpus" in problem


def test_a_tie_goes_to_the_trial_started_first_whatever_order_ray_reports_them_in() -> None:
    """A resumed sweep listed the same trials in another order, and best.yaml flipped to the other tied trial; and
    ties went to the smallest trial id, which under `search: optuna` is random hex, not the first trial."""
    started = {"f3a9c2d1": 2, "0b7e4a11": 3, "9c1d2e3f": 1}  # optuna's ids: the hex order is no start order
    tied = [TrialRow(t, f"s-{t}", {}, {0: 0.5, 1: 0.6}, "completed", n) for t, n in started.items()]
    assert best_row(tied, "max").trial_id == "9c1d2e3f" and best_row(list(reversed(tied)), "max").trial_id == "9c1d2e3f"
    assert best_row(tied, "min").trial_id == "9c1d2e3f"


def test_a_trials_start_number_comes_from_tunes_trial_tag_or_folder() -> None:
    """Ray Tune numbers trials as it creates them: `3_train.lr=0.01` in each result, and in the trial's folder name,
    which a trial that never reported still has. The table lists trials in that order, ties going to the first."""
    from ray import tune

    from orchestrator.tune.trial_rows import in_start_order, start_number

    reported = tune.Result({"experiment_tag": "12_train.lr=0.01"}, None, None, "/s/run_trial_f3a9c2d1_12_train.lr=0.01")
    assert start_number(reported, "f3a9c2d1") == 12
    pending = tune.Result({}, None, None, "/s/run_trial_9c1d2e3f_3_train.lr=0.1_2026-12-05_07-00-00")
    assert start_number(pending, "9c1d2e3f") == 3
    rows = [TrialRow(t, t, {}, {}, "completed", n) for t, n in (("a", None), ("b", 12), ("c", 3))]
    assert [row.trial_id for row in in_start_order(rows)] == ["c", "b", "a"]


def test_resuming_with_another_config_is_refused_naming_what_changed(tmp_path: Path) -> None:
    """`relay tune ... train.steps=25 --resume` of a sweep started with 20 rewrote best.yaml with 25."""
    import argparse

    from orchestrator.cli.sweeps.sweep_folder import check_same_sweep, differing_keys, save_sweep_config
    from orchestrator.errors import ConfigError

    started = {"train": {"steps": 20, "lr": 0.1}, "tune": {"num_samples": 2}}
    save_sweep_config(tmp_path, started)
    resume = argparse.Namespace(resume=True, config="a.yaml")
    check_same_sweep(resume, tmp_path, started)  # the same settings: resumes
    with pytest.raises(ConfigError, match=r"differs from the one the sweep .* started with \(train.steps\)"):
        check_same_sweep(resume, tmp_path, {"train": {"steps": 25, "lr": 0.1}, "tune": {"num_samples": 2}})
    assert differing_keys(started, {"train": {"lr": 0.1}, "tune": {"num_samples": 2}, "seed": 1}) == [
        "seed",
        "train.steps",
    ]


def test_a_sweep_no_trial_scored_fails_without_naming_a_best_yaml(tmp_path: Path, capsys) -> None:
    """Every trial errored: exit 1 and FAILED in MLflow, not exit 0 and a best.yaml that was never written."""
    from orchestrator.cli.sweeps.sweep_results import print_ending, sweep_status

    args = argparse.Namespace(config=str(SMOKE), overrides=[], output=None)
    assert print_ending(args, plan(smoke_data(), tmp_path), done=True, scored=False) == 1
    out, err = capsys.readouterr()
    assert "best.yaml" not in out + err and "no trial reported evaluate/balanced_accuracy" in err
    assert sweep_status(done=True, scored=False) == "FAILED"
    assert sweep_status(done=True, scored=True) == "FINISHED" and sweep_status(done=False, scored=True) == "KILLED"
    assert print_ending(args, plan(smoke_data(), tmp_path), done=True, scored=True) == 0
    assert "best.yaml" in capsys.readouterr().out
