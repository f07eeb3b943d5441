"""`relay runs`: a run interrupted before its stages is listed by when it started; a trial's generations count alike.

Real ledgers, written by the real Runner into a real artifact store under tmp_path.

- A run interrupted before its stages started has no ledger: it was listed last, start "-", however
  new; its command record's time is its start now.
- A Tune trial runs each generation up to its metric stage: one the scheduler stopped after its g00
  report showed `STOPPED 0/2`, one killed during g01 `INTERRUPTED 1/2`; both finished g00.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from orchestrator.cli import main
from orchestrator.dag import Pipeline, Stage, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner
from orchestrator.registry import PipelineSpec
from tests.unit.orchestrator.engine.toy import RecordingTracker, evaluate, make_data, train

TWO = PipelineSpec(name="two", config_model=dict, build=lambda config: two_generations(), summary={})
DEAD_PID = 2**22 + 7  # no process has it


def relabel(ctx, inputs, params):
    return StageResult(outputs={"labels": pa.table({"x": pa.array([1.0, 2.0], pa.float32())})})


def train_again(ctx, inputs, params):
    result = train(ctx, {"data": inputs["labels"]}, params)
    return StageResult(outputs={"model1": result.outputs["model"]}, metrics=result.metrics)


def two_generations() -> Pipeline:
    """g00: train, evaluate (its metric stage), relabel (for g01, after the evaluation); g01: train, evaluate."""
    return Pipeline(
        "two",
        [
            Stage("data", make_data, (), ("data",), params={"rows": 4, "scale": 1.0}),
            Stage("g00/train", train, ("data",), ("model",), params={"lr": 0.5}, generation=0),
            Stage("g00/evaluate", evaluate, ("model",), ("report",), generation=0),
            Stage("g00/relabel", relabel, ("model", "report"), ("labels",), generation=0),
            Stage("g01/train", train_again, ("labels",), ("model1",), params={"lr": 0.5}, generation=1),
            Stage("g01/evaluate", _evaluate_again, ("model1",), ("report1",), generation=1),
        ],
    )


def _evaluate_again(ctx, inputs, params):
    result = evaluate(ctx, {"model": inputs["model1"]}, params)
    return StageResult(outputs={"report1": result.outputs["report"]}, metrics=result.metrics)


def run(workspace: Path, run_id: str, stop_after: str) -> Path:
    """A real run of ``two_generations`` up to ``stop_after``; the path of its ledger."""
    store = ArtifactStore(str(workspace / "artifacts"))
    Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0).run(two_generations(), run_id, stop_after=stop_after)
    return workspace / "artifacts" / "runs" / run_id / "ledger.json"


def listed(workspace: Path, capsys) -> dict[str, list[str]]:
    assert main(["runs", "--workspace", str(workspace)], pipelines={"two": TWO}) == 0
    return {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}


def test_a_trial_stopped_after_its_report_counts_the_generation_as_one_killed_later_does(tmp_path, capsys):
    run(tmp_path, "sweep-asha", "g00/evaluate")  # what a trial the scheduler stopped after g00 leaves
    killed = run(tmp_path, "sweep-killed", "g01/evaluate")
    ledger = json.loads(killed.read_text())  # as a trial SIGKILLed during g01/train leaves it
    ledger.update(status="RUNNING", driver={"host": socket.gethostname(), "pid": DEAD_PID})
    ledger["stages"]["g01/train"]["state"] = "running"
    del ledger["stages"]["g01/evaluate"]
    killed.write_text(json.dumps(ledger))
    rows = listed(tmp_path, capsys)
    assert rows["sweep-asha"][2:4] == ["STOPPED", "1/2"]
    assert rows["sweep-killed"][2:4] == ["INTERRUPTED", "1/2"]


def test_a_run_of_relay_run_stopped_after_the_metric_stage_still_counts_whole_generations(tmp_path, capsys):
    """`relay run --stop-after g00/evaluate` left g00's relabel undone: g00 is not done (`relay resume` does it)."""
    run(tmp_path, "stopped", "g00/evaluate")
    (tmp_path / "artifacts" / "runs" / "stopped" / "config.yaml").write_text("pipeline: two\nname: two\n")
    assert listed(tmp_path, capsys)["stopped"][2:4] == ["STOPPED", "0/2"]


def test_a_run_interrupted_before_its_stages_is_listed_by_when_it_started(tmp_path, capsys):
    older = run(tmp_path, "older", "g00/evaluate")
    ledger = json.loads(older.read_text())
    older.write_text(json.dumps({**ledger, "started": "2020-01-01T00:00:00+00:00"}))
    record = tmp_path / "artifacts" / "runs" / "early"
    record.mkdir()
    (record / "config.yaml").write_text("pipeline: two\nname: two\n")
    command = {"config": "two.yaml", "overrides": [], "rerun": [], "driver": {"host": socket.gethostname(), "pid": 1}}
    (record / "command.json").write_text(json.dumps({**command, "driver": {**command["driver"], "pid": DEAD_PID}}))
    when = datetime(2030, 6, 1, 12, 0, tzinfo=UTC).timestamp()
    os.utime(record / "command.json", (when, when))
    assert list(listed(tmp_path, capsys)) == ["early", "older"]
    from orchestrator.cli.records.run_status import created

    assert created(ArtifactStore(str(tmp_path / "artifacts")), "early") == "2030-06-01T12:00:00+00:00"


def test_a_generated_run_id_gives_the_start_when_the_record_has_no_file_time(tmp_path):
    from orchestrator.cli.records.run_status import created

    store = ArtifactStore(str(tmp_path / "artifacts"))
    expected = datetime(2030, 1, 2, 3, 4, 5).astimezone().astimezone(UTC).isoformat(timespec="seconds")
    assert created(store, "smoke-20300102-030405-ab12") == expected
    assert created(store, "my-run") == ""
