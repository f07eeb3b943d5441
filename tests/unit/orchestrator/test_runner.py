"""Runner on a toy pipeline with LocalExecutor: caching, params invalidation, stop/resume, retries, corruption."""

import json
import logging

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from orchestrator.artifacts import ArtifactStore
from orchestrator.dag import Pipeline, Resources, Stage, StageResult
from orchestrator.errors import ArtifactError, ConfigError, PipelineError, StageError
from orchestrator.executor import LocalExecutor
from orchestrator.runner import (
    Decision,
    Runner,
    RunStatus,
    StageState,
    decide,
    execute_stage,
    fingerprint,
    stage_seed,
)

CALLS: list[str] = []


def make_data(ctx, inputs, params):
    CALLS.append(ctx.stage)
    values = [float(i) * params["scale"] for i in range(params["rows"])]
    return StageResult(outputs={"data": pa.table({"x": pa.array(values, pa.float32())})}, metrics={"rows": len(values)})


def train(ctx, inputs, params):
    CALLS.append(ctx.stage)
    total = float(pc.sum(inputs["data"]["x"]).as_py())
    for step in (1, 2):
        ctx.report(step, {"loss": total / step})
    weight = torch.full((2,), total * params["lr"])
    return StageResult(outputs={"model": {"w": weight, "lr": params["lr"]}}, metrics={"threads": torch.get_num_threads()})


def evaluate(ctx, inputs, params):
    CALLS.append(ctx.stage)
    score = float(inputs["model"]["w"].sum())
    report = pa.table({"score": pa.array([score], pa.float64())})
    return StageResult(outputs={"report": report}, metrics={"score": score}, files={"plot.png": b"\x89PNG"})


def flaky(ctx, inputs, params):
    CALLS.append(ctx.stage)
    if ctx.attempt < params["succeed_on"]:
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return StageResult(outputs={"flaky_out": {"attempt": ctx.attempt}})


def bad_value(ctx, inputs, params):
    CALLS.append(ctx.stage)
    raise ValueError("threshold must be in (0, 1); got 2")


def wrong_outputs(ctx, inputs, params):
    CALLS.append(ctx.stage)
    return StageResult(outputs={"unexpected": {"a": 1}})


def random_draw(ctx, inputs, params):
    CALLS.append(ctx.stage)
    return StageResult(outputs={"draw": {"x": torch.rand(3), "seed": ctx.seed, "device": ctx.device}})


class RecordingTracker:
    """A Tracker that remembers what the runner told it."""

    parent_run_id = None

    def __init__(self):
        self.started, self.records = [], []

    def start_pipeline(self, run_id, pipeline_name, config, resume):
        pass

    def stage_started(self, stage_name, generation):
        self.started.append(stage_name)

    def stage_finished(self, record):
        self.records.append(record)

    def end_pipeline(self, status):
        pass

    def record(self, stage):
        return [r for r in self.records if r.stage == stage][-1]


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def toy(lr=0.5, scale=1.0, extra=()):
    return Pipeline("toy", [
        Stage("data", make_data, (), ("data",), params={"rows": 4, "scale": scale}),
        Stage("g00/train", train, ("data",), ("model",), params={"lr": lr}, resources=Resources(num_cpus=2),
              generation=0),
        Stage("g00/evaluate", evaluate, ("model",), ("report",), generation=0),
        *extra,
    ])


def make_runner(tmp_path, tracker=None, seed=0):
    return Runner(ArtifactStore(str(tmp_path / "artifacts")), LocalExecutor(), tracker or RecordingTracker(),
                  code_version="v1", seed=seed, runs_dir=tmp_path / "runs")


def ledger(tmp_path, run_id):
    return json.loads((tmp_path / "runs" / run_id / "ledger.json").read_text())


# --- pure policy -------------------------------------------------------------------------


@pytest.mark.parametrize("error, attempt, retries, expected", [
    (RuntimeError("x"), 1, 2, Decision.RETRY),
    (RuntimeError("x"), 2, 2, Decision.RETRY),
    (RuntimeError("x"), 3, 2, Decision.RAISE),
    (RuntimeError("x"), 1, 0, Decision.RAISE),
    (OSError("network"), 1, 1, Decision.RETRY),
    (ArtifactError("m", "read failed"), 1, 1, Decision.RETRY),
    (ArtifactError("m", "unsupported type", retryable=False), 1, 5, Decision.RAISE),
    (ValueError("x"), 1, 5, Decision.RAISE),
    (TypeError("x"), 1, 5, Decision.RAISE),
    (KeyError("x"), 1, 5, Decision.RAISE),
    (FloatingPointError("nan"), 1, 5, Decision.RAISE),
    (ConfigError(["a: b"]), 1, 5, Decision.RAISE),
    (KeyboardInterrupt(), 1, 5, Decision.RAISE),
])
def test_decide(error, attempt, retries, expected):
    assert decide(error, attempt, retries) is expected


def test_fingerprint_is_stable_and_sensitive():
    stage = toy().stage("g00/train")
    base = fingerprint(stage, {"data": "d1"}, "v1", seed=0)
    reordered = Stage("g00/train", train, ("data",), ("model",), params=dict(reversed(list({"lr": 0.5}.items()))))
    assert fingerprint(stage, {"data": "d1"}, "v1", seed=0) == base
    assert fingerprint(reordered, {"data": "d1"}, "v1", seed=0) == base  # resources/generation do not matter
    changed = [
        fingerprint(toy(lr=0.1).stage("g00/train"), {"data": "d1"}, "v1", seed=0),
        fingerprint(stage, {"data": "d2"}, "v1", seed=0),
        fingerprint(stage, {"data": "d1"}, "v2", seed=0),
        fingerprint(stage, {"data": "d1"}, "v1", seed=1),
        fingerprint(Stage("g00/train", evaluate, ("data",), ("model",), params={"lr": 0.5}), {"data": "d1"}, "v1"),
    ]
    assert len(set(changed + [base])) == len(changed) + 1
    assert len(base) == 64


def test_fingerprint_rejects_params_that_are_not_json():
    stage = Stage("s", train, (), ("m",), params={"obj": object()})
    with pytest.raises(TypeError, match="stage 's': cannot fingerprint its params"):
        fingerprint(stage, {}, "v1")


# --- the worker side ----------------------------------------------------------------------


def test_execute_stage_sets_threads_seed_and_device_then_restores(tmp_path):
    store = ArtifactStore(str(tmp_path))
    stage = Stage("draw", random_draw, (), ("draw",), resources=Resources(num_cpus=1))
    before = torch.get_num_threads()
    first = execute_stage(stage, "fp-a", {}, store.uri, "run", 7, 1)
    second = execute_stage(stage, "fp-b", {}, store.uri, "run", 7, 1)
    a, b = store.load(first.outputs["draw"]), store.load(second.outputs["draw"])
    assert torch.equal(a["x"], b["x"])  # the global torch RNG is seeded per stage
    assert a["seed"] == stage_seed(7, "draw") != stage_seed(8, "draw")
    assert a["device"] == "cpu"
    assert torch.get_num_threads() == before
    assert store.read_manifest("fp-a") == first


# --- whole runs ---------------------------------------------------------------------------


def test_second_run_skips_every_stage_visibly(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator")
    first = make_runner(tmp_path).run(toy(), "run-1")
    assert first.status is RunStatus.FINISHED
    assert CALLS == ["data", "g00/train", "g00/evaluate"]
    assert first.manifests["g00/train"].metrics["threads"] == 2  # torch threads = num_cpus inside the stage

    CALLS.clear()
    tracker = RecordingTracker()
    second = make_runner(tmp_path, tracker).run(toy(), "run-2")
    assert CALLS == []
    assert second.names(StageState.CACHED) == ["data", "g00/train", "g00/evaluate"]
    assert all(r.cache_hit and r.status == "FINISHED" for r in tracker.records)
    assert tracker.started == []
    assert tracker.record("g00/evaluate").metrics == {"score": first.manifests["g00/evaluate"].metrics["score"]}
    assert "skip g00/train: cache hit" in caplog.text
    assert ledger(tmp_path, "run-2")["stages"]["g00/train"]["state"] == "cached"


def test_tracker_gets_series_files_and_fingerprints(tmp_path):
    tracker = RecordingTracker()
    summary = make_runner(tmp_path, tracker).run(toy(), "run-1")
    train_record = tracker.record("g00/train")
    assert train_record.series == [(1, {"loss": 6.0}), (2, {"loss": 3.0})]
    assert train_record.generation == 0 and not train_record.cache_hit
    assert train_record.fingerprint == summary.stages["g00/train"].fingerprint
    plot = tracker.record("g00/evaluate").files["plot.png"]
    assert open(plot, "rb").read() == b"\x89PNG"
    assert tracker.started == ["data", "g00/train", "g00/evaluate"]


def test_changing_params_reruns_the_stage_and_downstream_only(tmp_path):
    make_runner(tmp_path).run(toy(lr=0.5), "run-1")
    CALLS.clear()
    summary = make_runner(tmp_path).run(toy(lr=0.25), "run-2")
    assert CALLS == ["g00/train", "g00/evaluate"]
    assert summary.names(StageState.CACHED) == ["data"]
    assert summary.manifests["g00/evaluate"].metrics["score"] == pytest.approx(6.0 * 0.25 * 2)


def test_stop_after_then_rerun_finishes_the_rest(tmp_path):
    stopped = make_runner(tmp_path).run(toy(), "run-1", stop_after="g00/train")
    assert stopped.status is RunStatus.STOPPED
    assert CALLS == ["data", "g00/train"]
    assert ledger(tmp_path, "run-1")["status"] == "STOPPED"
    CALLS.clear()
    resumed = make_runner(tmp_path).run(toy(), "run-1")
    assert CALLS == ["g00/evaluate"]
    assert resumed.names(StageState.CACHED) == ["data", "g00/train"]
    assert resumed.status is RunStatus.FINISHED
    assert ledger(tmp_path, "run-1")["status"] == "FINISHED"


def test_stop_after_unknown_stage_lists_valid_ones(tmp_path):
    with pytest.raises(PipelineError, match="no stage named 'g09/train'; valid stages: data"):
        make_runner(tmp_path).run(toy(), "run-1", stop_after="g09/train")


def test_transient_error_is_retried(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator")
    stage = Stage("flaky", flaky, ("data",), ("flaky_out",), params={"succeed_on": 3}, retries=2)
    summary = make_runner(tmp_path).run(toy(extra=[stage]), "run-1")
    assert CALLS.count("flaky") == 3
    assert summary.stages["flaky"].attempts == 3
    assert summary.stages["flaky"].state is StageState.SUCCEEDED
    assert "stage flaky attempt 1 failed (RuntimeError: transient failure on attempt 1); retrying" in caplog.text


def test_transient_error_out_of_retries_fails_the_run(tmp_path):
    stage = Stage("flaky", flaky, ("data",), ("flaky_out",), params={"succeed_on": 9}, retries=1)
    with pytest.raises(StageError) as info:
        make_runner(tmp_path).run(toy(extra=[stage]), "run-1")
    assert CALLS.count("flaky") == 2
    assert info.value.attempts == 2
    assert isinstance(info.value.cause, RuntimeError)


def test_deterministic_error_is_not_retried_and_says_how_to_resume(tmp_path, caplog):
    tracker = RecordingTracker()
    stage = Stage("bad", bad_value, ("data",), ("bad_out",), retries=3)
    with pytest.raises(StageError) as info:
        make_runner(tmp_path, tracker).run(toy(extra=[stage]), "run-7")
    assert CALLS.count("bad") == 1
    assert info.value.stage == "bad" and info.value.attempts == 1
    assert isinstance(info.value.__cause__, ValueError)
    assert "Resume with: relay resume run-7" in caplog.text
    failed = tracker.record("bad")
    assert failed.status == "FAILED" and "threshold must be in (0, 1)" in failed.error
    record = ledger(tmp_path, "run-7")
    assert record["status"] == "FAILED"
    assert record["stages"]["bad"]["state"] == "failed"
    assert record["stages"]["g00/evaluate"]["state"] == "succeeded"  # independent work was finished, not orphaned


def test_stage_returning_wrong_outputs_fails_without_retry(tmp_path):
    stage = Stage("wrong", wrong_outputs, (), ("right",), retries=2)
    with pytest.raises(StageError, match=r"returned outputs \['unexpected'\]; expected \['right'\]"):
        make_runner(tmp_path).run(Pipeline("p", [stage]), "run-1")
    assert CALLS == ["wrong"]


def test_corrupted_artifact_is_recomputed_not_used(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator")
    first = make_runner(tmp_path).run(toy(), "run-1")
    ref = first.manifests["g00/train"].outputs["model"]
    path = tmp_path / "artifacts" / ref.path
    path.write_bytes(path.read_bytes()[:-16])  # truncated
    CALLS.clear()
    second = make_runner(tmp_path).run(toy(), "run-2")
    assert CALLS == ["g00/train"]  # rewritten with identical bytes, so evaluate stays cached
    assert "recompute g00/train: stored outputs ['model'] are missing or corrupted" in caplog.text
    assert second.names(StageState.CACHED) == ["data", "g00/evaluate"]
    assert ArtifactStore(str(tmp_path / "artifacts")).verify(second.manifests["g00/train"]) == []


def test_seed_changes_fingerprints(tmp_path):
    make_runner(tmp_path, seed=0).run(toy(), "run-1")
    CALLS.clear()
    make_runner(tmp_path, seed=1).run(toy(), "run-2")
    assert CALLS == ["data", "g00/train", "g00/evaluate"]
