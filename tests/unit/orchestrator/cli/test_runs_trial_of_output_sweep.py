"""`relay runs` and `relay generations` on the trials of a sweep written with `--output`, and of one stopped early.

Real ledgers, written by the real Runner into a real artifact store under tmp_path; the trial's
record of its sweep written as run_trial writes it (``sweep_record``).

- A trial's pipeline and config were looked for in WORKSPACE/tune/SWEEP only: the trials of a sweep
  written with `--output` showed the config's name (`my-config`) for their pipeline and no best metric.
- `relay generations` said of a trial its scheduler stopped early that `relay tune CONFIG --resume`
  continues it: nothing is left to run.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from orchestrator.cli import main
from orchestrator.cli.records.run_notes import unfinished_note
from orchestrator.dag import Pipeline
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.ledger import record_path
from orchestrator.engine.runner import Runner
from orchestrator.registry import PipelineSpec
from orchestrator.tune.plan import SWEEP_RECORD, sweep_record
from tests.unit.orchestrator.cli.test_runs_started_and_trials import two_generations
from tests.unit.orchestrator.engine.toy import RecordingTracker

TWO = PipelineSpec(
    name="two", config_model=dict, build=lambda config: two_generations(), summary={"score": "evaluate/score"}
)


def trial(workspace: Path, output: Path, run_id: str, stop_after: str) -> ArtifactStore:
    """A trial of sweep `out` (config name `my-config`, pipeline `two`) run up to ``stop_after``, recording its sweep."""
    store = ArtifactStore(str(workspace / "artifacts"))
    pipeline = Pipeline("my-config", two_generations().stages)  # a trial's pipeline carries the config's name
    for stage in ("g00/evaluate", "g01/evaluate")[: 1 + (stop_after == "g01/evaluate")]:
        Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0).run(pipeline, run_id, stop_after=stage)
    plan = SimpleNamespace(name="out", output=str(output), pipeline_kind="two")
    store.write_record(record_path(run_id, SWEEP_RECORD), json.dumps(sweep_record(plan)).encode())
    output.mkdir(parents=True, exist_ok=True)
    (output / "sweep-config.yaml").write_text("pipeline: two\nname: my-config\n")
    return store


def test_a_trial_of_an_output_sweep_shows_its_pipeline_and_best_metric(tmp_path: Path, capsys) -> None:
    trial(tmp_path / "ws", tmp_path / "elsewhere" / "out", "out-abcde_00000", "g01/evaluate")
    assert main(["runs", "--workspace", str(tmp_path / "ws")], pipelines={"two": TWO}) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("out-abcde_00000")]
    cells = line.split()
    assert cells[1] == "two"
    assert "score" in cells and "-" not in cells[3:5]


def test_a_trial_its_scheduler_stopped_is_not_sent_to_resume(tmp_path: Path) -> None:
    output = tmp_path / "out"
    store = trial(tmp_path / "ws", output, "out-abcde_00001", "g00/evaluate")
    (output / "trials.json").write_text(json.dumps([{"run_id": "out-abcde_00001", "status": "stopped early"}]))
    note = unfinished_note(store, "out-abcde_00001")
    assert "stopped early" in note and "nothing is left to run" in note
    assert "continues the sweep" not in note


def test_a_trial_cut_off_is_still_sent_to_resume(tmp_path: Path) -> None:
    output = tmp_path / "out"
    store = trial(tmp_path / "ws", output, "out-abcde_00002", "g00/evaluate")
    (output / "trials.json").write_text(json.dumps([{"run_id": "out-abcde_00002", "status": "interrupted"}]))
    assert "`relay tune CONFIG --resume` continues the sweep" in unfinished_note(store, "out-abcde_00002")
