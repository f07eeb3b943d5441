"""Runner on a toy pipeline with LocalExecutor: caching, params invalidation, stop/resume, retries, corruption."""

import json
import logging
import os
from pathlib import Path

import pytest

from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.checkpoints import StoreCheckpointer
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner, RunStatus, StageState
from orchestrator.errors import PipelineError, StageError, UnreadableDataError
from tests.unit.orchestrator.engine.toy import (
    CALLS,
    RecordingTracker,
    bad_value,
    ctrl_c_after_ledger_write,
    flaky,
    sigterm_as_relay_run_takes_it,
    toy,
    wrong_outputs,
)


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def make_runner(tmp_path, tracker=None, seed=0, cluster_job=False):
    return Runner(
        ArtifactStore(str(tmp_path / "artifacts")),
        LocalExecutor(),
        tracker or RecordingTracker(),
        code_version="v1",
        seed=seed,
        cluster_job=cluster_job,
    )


def ledger(tmp_path, run_id):
    """The run's ledger, beside the artifacts in the store."""
    return json.loads((tmp_path / "artifacts" / "runs" / run_id / "ledger.json").read_text())


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
    assert Path(plot).read_bytes() == b"\x89PNG"
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


def unreadable_image(ctx, inputs, params):
    CALLS.append(ctx.stage)
    raise UnreadableDataError(
        "imagefolder: /data/train/c1/107.png does not decode as an image (image file is truncated)"
    )


def test_an_unreadable_data_file_says_to_start_a_new_run_not_to_resume(tmp_path, caplog):
    """The resume it advised refused the fixed file: the data changed since the run started."""
    stage = Stage("read", unreadable_image, ("data",), ("read_out",), retries=3)
    with pytest.raises(StageError):
        make_runner(tmp_path).run(toy(extra=[stage]), "run-8")
    assert CALLS.count("read") == 1 and "does not decode" in caplog.text  # not retried: it cannot read better
    assert "Once the data is fixed, start a new run" in caplog.text
    assert "relay resume" not in caplog.text


def nan_loss(ctx, inputs, params):
    raise ValueError("loss is nan at step 3; lower train.lr, check the inputs for NaN/inf.")


def test_a_failure_message_that_ends_a_sentence_gets_one_full_stop(tmp_path, caplog):
    with pytest.raises(StageError):
        make_runner(tmp_path).run(toy(extra=[Stage("nan", nan_loss, ("data",), ("nan_out",))]), "run-9")
    assert "NaN/inf. (traceback: " in caplog.text and "nan.txt). Fix the cause" in caplog.text  # where it was raised
    assert ".." not in caplog.text


@pytest.mark.parametrize("cluster_job", [False, True])
def test_only_a_run_on_a_cluster_is_told_to_resume_as_a_cluster_job(tmp_path, caplog, cluster_job):
    """A run on this machine's own Ray was told `(a cluster job: relay submit --resume ...)` too, which it cannot use."""
    with pytest.raises(StageError):
        make_runner(tmp_path, cluster_job=cluster_job).run(
            toy(extra=[Stage("nan", nan_loss, ("data",), ("o",))]), "run-5"
        )
    assert "Resume with: relay resume run-5" in caplog.text
    assert ("(a cluster job: relay submit --resume run-5)" in caplog.text) is cluster_job


def test_a_submitted_job_is_told_the_cluster_to_resume_on(tmp_path, caplog, monkeypatch):
    """The hint named no --address, and `relay submit --resume` cannot go without one."""
    monkeypatch.setenv("RELAY_JOB_ADDRESS", "http://10.0.0.5:8265")  # what `relay submit` sets in the job
    with pytest.raises(StageError):
        make_runner(tmp_path, cluster_job=True).run(toy(extra=[Stage("nan", nan_loss, ("data",), ("o",))]), "run-6")
    assert "(a cluster job: relay submit --resume run-6 --address http://10.0.0.5:8265)" in caplog.text


def test_a_quoted_hint_quotes_each_command_on_its_own(tmp_path, monkeypatch):
    """The record-lost line wrapped the whole hint in one pair of backticks: a copy carried the job's words too."""
    monkeypatch.delenv("RELAY_JOB_ADDRESS", raising=False)
    hint = make_runner(tmp_path, cluster_job=True)._resume_command("run-6", quote="`")
    assert hint == "`relay resume run-6` (a cluster job: `relay submit --resume run-6`)"
    assert make_runner(tmp_path)._resume_command("run-6", quote="`") == "`relay resume run-6`"


def test_deterministic_error_is_not_retried_and_says_how_to_resume(tmp_path, caplog):
    tracker = RecordingTracker()
    stage = Stage("bad", bad_value, ("data",), ("bad_out",), retries=3)
    with pytest.raises(StageError) as info:
        make_runner(tmp_path, tracker).run(toy(extra=[stage]), "run-7")
    assert CALLS.count("bad") == 1
    assert info.value.stage == "bad" and info.value.attempts == 1
    assert isinstance(info.value.__cause__, ValueError)
    assert "Resume with: relay resume run-7" in caplog.text and "relay submit" not in caplog.text

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
    assert "recompute g00/train: stored outputs or files ['model'] are missing or corrupted" in caplog.text
    assert second.names(StageState.CACHED) == ["data", "g00/evaluate"]
    assert ArtifactStore(str(tmp_path / "artifacts")).verify(second.manifests["g00/train"]) == []


def test_rerun_runs_the_named_stages_even_when_cached_and_reuses_the_rest(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="orchestrator")
    make_runner(tmp_path).run(toy(), "run-1")
    CALLS.clear()
    pipeline = toy()
    summary = make_runner(tmp_path).run(pipeline, "run-2", rerun={"g00/train", *pipeline.downstream("g00/train")})
    assert CALLS == ["g00/train", "g00/evaluate"]  # outputs identical, yet run: the cache was not read
    assert summary.names(StageState.CACHED) == ["data"]
    assert summary.names(StageState.SUCCEEDED) == ["g00/train", "g00/evaluate"]
    assert "run g00/train (attempt 1, fingerprint" in caplog.text and "rerun on request" in caplog.text


def test_rerun_of_every_stage_reads_no_cache(tmp_path):
    make_runner(tmp_path).run(toy(), "run-1")
    CALLS.clear()
    pipeline = toy()
    summary = make_runner(tmp_path).run(pipeline, "run-2", rerun={s.name for s in pipeline.stages})
    assert CALLS == ["data", "g00/train", "g00/evaluate"]
    assert summary.names(StageState.CACHED) == []


FAIL_AFTER_CHECKPOINT: list[bool] = []  # one entry: the next call fails once it has saved its checkpoint


def resumable(ctx, inputs, params):
    """Records the step of the checkpoint it starts from (None: from the start), saves one, then fails if told to."""
    CALLS.append(("from", (ctx.checkpointer.load() or {}).get("step")))
    ctx.checkpointer.save({"step": 7}, 7)
    if FAIL_AFTER_CHECKPOINT:
        FAIL_AFTER_CHECKPOINT.pop()
        raise ValueError("deterministic failure after the checkpoint")
    return StageResult(outputs={"model": {"w": 1.0}})


def resumable_pipeline() -> Pipeline:
    return Pipeline("ckpt", [Stage("g00/train", resumable, (), ("model",), retries=0)])


def test_a_rerun_on_request_ignores_a_checkpoint_another_run_left_and_keeps_its_own(tmp_path):
    """`--no-cache` after a killed run used to resume training from that run's leftover checkpoint."""
    store = ArtifactStore(str(tmp_path / "artifacts"))
    fp = make_runner(tmp_path).run(resumable_pipeline(), "run-1").stages["g00/train"].fingerprint
    StoreCheckpointer(store, fp).save({"step": 5}, 5)  # what an attempt killed mid-stage leaves
    CALLS.clear()
    make_runner(tmp_path).run(resumable_pipeline(), "run-2", rerun={"g00/train"})
    assert CALLS == [("from", None)], "computed afresh, not from the other run's checkpoint"

    StoreCheckpointer(store, fp).save({"step": 5}, 5)
    CALLS.clear()
    FAIL_AFTER_CHECKPOINT.append(True)
    with pytest.raises(StageError):
        make_runner(tmp_path).run(resumable_pipeline(), "run-3", rerun={"g00/train"})
    resumed = make_runner(tmp_path).run(resumable_pipeline(), "run-3", rerun={"g00/train"})
    assert resumed.status is RunStatus.FINISHED
    assert CALLS == [("from", None), ("from", 7)], "the run's own resume goes on from its own checkpoint"


def size_of(ctx, inputs, params):
    """A second reader of the model beside g00/evaluate: neither needs the other."""
    return StageResult(outputs={"size": {"n": float(inputs["model"]["w"].numel())}})


def test_a_run_whose_attempts_did_every_stage_between_them_is_finished(tmp_path):
    """A tune trial stops its last generation after that generation's stage; the first generation's evaluation,
    done by an earlier attempt, is no input of it, and the complete run read STOPPED."""
    pipeline = toy(extra=(Stage("g00/size", size_of, ("model",), ("size",), generation=0),))
    assert make_runner(tmp_path).run(pipeline, "run-1", stop_after="g00/evaluate").status is RunStatus.STOPPED
    summary = make_runner(tmp_path).run(pipeline, "run-1", stop_after="g00/size")
    assert "g00/evaluate" not in summary.stages, "the second attempt planned only g00/size and what it needs"
    assert summary.status is RunStatus.FINISHED
    assert ledger(tmp_path, "run-1")["status"] == "FINISHED"
    assert make_runner(tmp_path).run(pipeline, "run-2", stop_after="g00/size").status is RunStatus.STOPPED


def test_rerun_of_an_unknown_stage_lists_valid_ones(tmp_path):
    with pytest.raises(PipelineError, match="no stage named 'g09/train'; valid stages: data"):
        make_runner(tmp_path).run(toy(), "run-1", rerun={"g09/train"})
    assert not (tmp_path / "runs").exists()


def test_code_versions_per_module_rerun_only_the_stages_whose_code_changed(tmp_path):
    from tests.unit.orchestrator.engine import toy as toy_module

    def runner(version):
        return Runner(
            ArtifactStore(str(tmp_path / "artifacts")),
            LocalExecutor(),
            RecordingTracker(),
            code_version={toy_module.__name__: version, "some.other.module": "x"},
            seed=0,
        )

    runner("a").run(toy(), "run-1")
    CALLS.clear()
    runner("a").run(toy(), "run-2")
    assert CALLS == []
    runner("b").run(toy(), "run-3")
    assert CALLS == ["data", "g00/train", "g00/evaluate"]


def test_the_ledger_says_what_relay_runs_shows(tmp_path):
    make_runner(tmp_path).run(toy(), "run-1", stop_after="g00/train")
    first = ledger(tmp_path, "run-1")
    assert first["generations"] == {"0": 2}
    assert first["stages"]["g00/train"]["generation"] == 0 and first["stages"]["data"]["generation"] is None
    assert first["stages"]["data"]["metrics"] == {"rows": 4.0}
    assert first["driver"]["pid"] == os.getpid() and first["started"]
    make_runner(tmp_path).run(toy(), "run-1")
    resumed = ledger(tmp_path, "run-1")
    assert resumed["started"] == first["started"]  # a resumed run keeps its start
    assert resumed["stages"]["g00/evaluate"]["metrics"] == {"score": 6.0}  # sum(0..3) * lr 0.5 * 2 weights


def test_a_parquet_table_with_one_flipped_byte_is_recomputed_not_used(tmp_path, caplog):
    """Same size, one byte changed: only its sha256 tells, and it is checked before the cache hit is reported."""
    caplog.set_level(logging.INFO, logger="orchestrator")
    first = make_runner(tmp_path).run(toy(), "run-1")
    path = tmp_path / "artifacts" / first.manifests["data"].outputs["data"].path
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    CALLS.clear()
    second = make_runner(tmp_path).run(toy(), "run-2")
    assert CALLS == ["data"]  # rewritten with identical bytes, so everything downstream stays cached
    assert "recompute data: stored outputs or files ['data'] are missing or corrupted" in caplog.text
    assert ArtifactStore(str(tmp_path / "artifacts")).verify(second.manifests["data"]) == []


def test_seed_changes_fingerprints(tmp_path):
    make_runner(tmp_path, seed=0).run(toy(), "run-1")
    CALLS.clear()
    make_runner(tmp_path, seed=1).run(toy(), "run-2")
    assert CALLS == ["data", "g00/train", "g00/evaluate"]


def stopped_from_outside(ctx, inputs, params):
    """What Ray's SIGTERM handler does to a driver when `relay stop` (`ray job stop`) ends the job."""
    CALLS.append(ctx.stage)
    raise SystemExit(1)


def test_a_run_stopped_from_outside_is_interrupted_not_failed(tmp_path, caplog):
    """`relay stop` used to leave the run FAILED ("failed: 1. Fix the cause.") with its stage still running."""
    stop = Stage("g00/stopped", stopped_from_outside, ("model",), ("stopped",), generation=0)
    with pytest.raises(SystemExit):
        make_runner(tmp_path).run(toy(extra=(stop,)), "run-stopped")
    written = ledger(tmp_path, "run-stopped")
    assert written["status"] == RunStatus.INTERRUPTED.value
    assert written["stages"]["g00/stopped"]["state"] == StageState.PENDING.value
    assert "Fix the cause" not in caplog.text and "relay resume run-stopped" in caplog.text


def test_a_stage_lasts_from_its_submission_not_from_when_its_body_began() -> None:
    """Ray Train's start-up (and a retry) come before the body's own clock starts: the ledger counts them."""
    import time

    from orchestrator.engine.manifests import Manifest
    from orchestrator.engine.run_state import StageOutcome, wall_time

    body = Manifest(fingerprint="fp", stage="g00/train", outputs={}, duration_s=1.0)
    assert wall_time(StageOutcome(submitted_at=time.monotonic() - 5.0), body) >= 5.0
    assert wall_time(StageOutcome(), body) == 1.0  # nothing known of its submission: the body's time


def test_a_resume_says_why_a_stage_its_run_finished_runs_again(tmp_path, caplog):
    """After an upgrade, a resume of a finished run ran every stage again without a word."""
    from tests.unit.orchestrator.engine import toy as toy_module

    def runner(version):
        code = {toy_module.__name__: version}
        return Runner(ArtifactStore(str(tmp_path / "artifacts")), LocalExecutor(), RecordingTracker(), code, seed=0)

    runner("a").run(toy(), "run-1")
    caplog.set_level(logging.INFO, logger="orchestrator.engine.runner")
    runner("a").run(toy(), "run-1")
    assert "runs again" not in caplog.text, "nothing changed: every stage is its own cache hit"
    runner("b").run(toy(), "run-1")
    assert f"g00/train runs again: the code of {toy_module.__name__} changed since an earlier attempt" in caplog.text
    caplog.clear()
    runner("b").run(toy(), "run-2")
    assert "runs again" not in caplog.text, "a new run has no earlier attempt to compare with"


def interrupted_body(ctx, inputs, params):
    """A stage body cut off by Ctrl-C."""
    raise KeyboardInterrupt


def with_body(pipeline: Pipeline, name: str, body) -> Pipeline:
    """``pipeline`` with stage ``name`` running ``body`` instead (same inputs, outputs and params)."""
    import dataclasses

    return Pipeline(pipeline.name, [dataclasses.replace(s, fn=body) if s.name == name else s for s in pipeline.stages])


def test_an_attempt_that_ends_before_a_stage_keeps_what_earlier_attempts_recorded_of_it(tmp_path):
    """A resume cut off before reaching a stage wrote it as pending with no fingerprint: the ledger no longer
    named the folder an earlier attempt had finished or checkpointed into, and `relay gc` removed it."""
    finished = make_runner(tmp_path).run(toy(), "run-1")
    with pytest.raises(KeyboardInterrupt):  # attempt 2: cut off in g00/train, which it had to run again
        make_runner(tmp_path).run(with_body(toy(), "g00/train", interrupted_body), "run-1", rerun={"g00/train"})
    second = ledger(tmp_path, "run-1")["stages"]
    assert second["g00/train"]["state"] == "pending" and second["g00/train"]["fingerprint"]
    with pytest.raises(KeyboardInterrupt):  # attempt 3: cut off in its first stage, before g00/train
        make_runner(tmp_path).run(with_body(toy(), "data", interrupted_body), "run-1", rerun={"data"})
    third = ledger(tmp_path, "run-1")["stages"]
    assert third["g00/train"] == second["g00/train"]  # attempt 2's fingerprint: its folder stays named
    assert third["g00/evaluate"]["state"] == "succeeded"
    assert third["g00/evaluate"]["fingerprint"] == finished.stages["g00/evaluate"].fingerprint


def with_resources(pipeline: Pipeline, name: str, **changes) -> Pipeline:
    """``pipeline`` with stage ``name``'s resources (or parallelism) changed."""
    import dataclasses

    parallelism = changes.pop("parallelism", None)

    def changed(s):
        resources = dataclasses.replace(s.resources, **changes)
        return dataclasses.replace(s, resources=resources, parallelism=parallelism or s.parallelism)

    return Pipeline(pipeline.name, [changed(s) if s.name == name else s for s in pipeline.stages])


def test_a_data_parallel_stage_run_here_is_stored_as_the_one_process_it_ran_as(tmp_path):
    """workers=2 ran here as one process and was stored under the fingerprint of 2 ranks: a run on Ray then
    took the one-process result for its own as a cache hit."""
    from orchestrator.dag import Parallelism
    from orchestrator.engine.fingerprint import fingerprint

    two = with_resources(toy(), "g00/train", workers=2, parallelism=Parallelism.DATA)
    here = make_runner(tmp_path / "a").run(two, "run-1").stages["g00/train"].fingerprint
    one = make_runner(tmp_path / "b").run(toy(), "run-1").stages["g00/train"].fingerprint
    assert here == one
    data = make_runner(tmp_path / "b").run(toy(), "run-2").manifests["data"].outputs["data"].digest
    assert here != fingerprint(two.stage("g00/train"), {"data": data}, "v1", 0)  # what 2 ranks on Ray are stored as


def test_a_stage_asking_for_a_gpu_here_is_stored_as_run_where_it_ran():
    """num_gpus=1 with no GPU visible trained on the CPU and was stored as trained on cuda."""
    import torch

    from orchestrator.engine.fingerprint import numerics

    stage = with_resources(toy(), "g00/train", num_gpus=1.0).stage("g00/train")
    assert numerics(stage)["cuda"] is True
    assert LocalExecutor().numerics(stage)["cuda"] is torch.cuda.is_available()


def test_a_trials_failure_names_the_sweeps_resume_not_relay_resume(tmp_path, caplog):
    """A trial's failure said `Resume with: relay resume TRIAL_ID`, which refuses a trial of a sweep."""
    from orchestrator.tune.trial import TRIAL_CONTINUED_BY

    runner = Runner(
        ArtifactStore(str(tmp_path / "artifacts")),
        LocalExecutor(),
        RecordingTracker(),
        "v1",
        0,
        continued_by=TRIAL_CONTINUED_BY,
    )
    with pytest.raises(StageError), caplog.at_level(logging.ERROR):
        runner.run(
            toy(extra=(Stage("g00/check", bad_value, ("report",), ("checked",), generation=0),)), "sweep-x_00001"
        )
    assert "Fix the cause. Resume with: relay tune CONFIG --resume" in caplog.text
    assert "relay resume sweep-x_00001" not in caplog.text


def test_a_second_ctrl_c_while_the_first_is_recorded_keeps_the_line_and_the_ledger(tmp_path, caplog, monkeypatch):
    """A Ctrl-C often comes twice (a double press; `timeout` forwarding its group's SIGINT): the second, landing
    while the first was recorded, cut off the line saying how to resume (QA, 3 of 7 interrupts). Here it comes
    from the ledger write itself, to this process, the way a terminal sends it."""
    import signal

    ctrl_c_after_ledger_write(monkeypatch, RunStatus.INTERRUPTED)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        make_runner(tmp_path).run(with_body(toy(), "g00/train", interrupted_body), "twice")
    assert ledger(tmp_path, "twice")["status"] == RunStatus.INTERRUPTED.value
    assert "interrupted; resume with: relay resume twice" in caplog.text
    assert signal.getsignal(signal.SIGINT) is before  # the held Ctrl-C's handler is gone with the block


def test_a_ctrl_c_as_the_finished_ledger_is_written_comes_after_the_runner_notes_how_the_run_ended(
    tmp_path, monkeypatch
):
    """A Ctrl-C landing in the FINISHED ledger's write (CI, once: in its rename) left `relay run` treating a
    run its ledger called FINISHED as killed. Held to the end of that step, it comes once ``ended_as`` says
    FINISHED too. A real SIGINT to this process, sent from inside the write, as a terminal sends it."""
    ctrl_c_after_ledger_write(monkeypatch, RunStatus.FINISHED)
    runner = make_runner(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        runner.run(toy(), "ending")
    assert ledger(tmp_path, "ending")["status"] == RunStatus.FINISHED.value
    assert runner.ended_as is RunStatus.FINISHED
    monkeypatch.undo()
    with pytest.raises(KeyboardInterrupt):  # the next attempt knows nothing of how the last one ended
        runner.run(with_body(toy(), "g00/train", interrupted_body), "ending", rerun={"g00/train"})
    assert runner.ended_as is None


def test_a_sigterm_as_the_finished_ledger_is_written_comes_after_the_runner_notes_how_the_run_ended(
    tmp_path, monkeypatch
):
    """The same window for a SIGTERM (a supervisor, `timeout`): with `relay run`'s handler set, it reaches that
    handler (Terminated, exit 143) once ``ended_as`` says FINISHED, as the ledger does."""
    import signal

    from orchestrator.engine import signals

    with sigterm_as_relay_run_takes_it():
        ctrl_c_after_ledger_write(monkeypatch, RunStatus.FINISHED, signal.SIGTERM)
        runner = make_runner(tmp_path)
        with pytest.raises(signals.Terminated):
            runner.run(toy(), "ending")
        assert signals.terminated_by_signal()
    assert ledger(tmp_path, "ending")["status"] == RunStatus.FINISHED.value
    assert runner.ended_as is RunStatus.FINISHED
