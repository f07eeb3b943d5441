"""A stage body that raises leaves its traceback where its author can find it: on the console and in the run record.

Why: a plug-in's author got only ``stage 'g00/qa_filter' failed after 1 attempt(s): KeyError: 'pseudo_labels'``,
with no file or line anywhere (console with -v, ledger, MLflow). The body's own frames are now logged once
at ERROR, stored in ``runs/<run id>/errors/<stage>.txt``, and the run's final error names that file.
``failing_body`` is shared with the Ray run (tests/integration/test_stage_tracebacks_on_ray.py).
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest

from orchestrator.dag import Pipeline, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner
from orchestrator.errors import ArtifactError, StageError
from tests.unit.orchestrator.engine.toy import RecordingTracker

STAGE = "g00/qa_filter"
HEAD = "stage 'g00/qa_filter' failed after 1 attempt(s): KeyError: 'pseudo_labels'"


def pseudo_labels_of(inputs):
    """The helper the stage body calls, which raises: the frame a user must be shown."""
    return inputs["pseudo_labels"]


def failing_body(ctx, inputs, params):
    """A plug-in stage body that reads an input it was not given, in a helper."""
    return pseudo_labels_of(inputs)


def no_result(ctx, inputs, params):
    """A stage body that returns nothing: Relay's result check fails it, not the body."""
    return None


RAISING_LINE = pseudo_labels_of.__code__.co_firstlineno + 2  # the helper's `return inputs["pseudo_labels"]`


def failing_pipeline() -> Pipeline:
    return Pipeline("plugin", [Stage(STAGE, failing_body, (), ("kept",), generation=0)])


def body_frame() -> str:
    """The traceback line of the helper's frame, as Python writes it."""
    return f'File "{Path(__file__)}", line {RAISING_LINE}, in pseudo_labels_of'


def assert_traceback_kept(store_root: Path, run_id: str, error: StageError, log: str) -> None:
    """The stored traceback, the final error and the log, as a plug-in's author needs them (shared with the Ray run)."""
    stored = store_root / "runs" / run_id / "errors" / "g00_qa_filter.txt"
    assert str(error).startswith(HEAD), str(error)
    assert str(error).endswith(f"(traceback: {stored})"), f"the final error does not name the traceback: {error}"
    assert stored.is_file(), f"no traceback stored at {stored}"
    text = stored.read_text()
    assert body_frame() in text, f"the stored traceback lacks the helper's frame {body_frame()!r}:\n{text}"
    assert "in failing_body" in text and text.rstrip().endswith("KeyError: 'pseudo_labels'"), text
    relay_frames = [
        name
        for name in ("engine/body.py", "engine/executors.py", "engine/ray_task.py", "engine/runner.py")
        if name in text
    ]
    assert not relay_frames, f"Relay's own frames ({relay_frames}) in the body's traceback:\n{text}"
    assert body_frame() in log, f"the log does not show the body's frame:\n{log}"
    assert f"traceback kept in {stored}" in log, log
    ledger = json.loads((store_root / "runs" / run_id / "ledger.json").read_text())
    assert ledger["stages"][STAGE]["traceback"] == f"runs/{run_id}/errors/g00_qa_filter.txt", ledger["stages"][STAGE]
    assert ledger["stages"][STAGE]["error"] == "KeyError: 'pseudo_labels'"


def test_a_local_stage_body_that_raises_leaves_its_traceback_in_the_record_and_the_log(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator")
    tracker = RecordingTracker()
    runner = Runner(ArtifactStore(str(tmp_path / "store")), LocalExecutor(), tracker, "v1", seed=0)
    with pytest.raises(StageError) as info:
        runner.run(failing_pipeline(), "run-1")
    assert_traceback_kept(tmp_path / "store", "run-1", info.value, caplog.text)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and body_frame() in r.getMessage()]
    assert len(errors) == 1, "the body's traceback is to be logged once, at ERROR"
    files = tracker.record(STAGE).files
    assert Path(files["traceback.txt"]).read_text().count(body_frame()) == 1, files


def test_a_failure_outside_the_body_keeps_relays_traceback_in_the_record_only(tmp_path, caplog) -> None:
    """A stage returning the wrong outputs fails in Relay's check, not in the body: the console says the one line
    (the traceback at DEBUG, -v), and the record keeps Relay's frames for whoever debugs it."""
    caplog.set_level(logging.INFO, logger="orchestrator")

    runner = Runner(ArtifactStore(str(tmp_path / "store")), LocalExecutor(), RecordingTracker(), "v1", seed=0)
    with pytest.raises(StageError) as info:
        runner.run(Pipeline("p", [Stage("g00/lazy", no_result, (), ("kept",), generation=0)]), "run-1")
    stored = tmp_path / "store" / "runs" / "run-1" / "errors" / "g00_lazy.txt"
    assert str(info.value).endswith(f"(traceback: {stored})"), str(info.value)
    assert "in _check_result" in stored.read_text()
    assert "Traceback" not in caplog.text, caplog.text


def test_a_body_traceback_crosses_a_process_boundary_with_a_relay_error() -> None:
    """Relay's errors pickle with their own ``__reduce__``; the body's traceback kept with one survives it
    (a Ray worker's body raising ArtifactError), as it does with any plain exception."""
    from orchestrator.engine.body import keep_body_traceback
    from orchestrator.errors import body_traceback

    for error in (ArtifactError("g00/model", "could not write"), KeyError("pseudo_labels")):
        try:
            raise error
        except Exception as raised:
            keep_body_traceback(raised)
        copy = pickle.loads(pickle.dumps(error))
        assert body_traceback(copy) == body_traceback(error) and "test_stage_tracebacks.py" in body_traceback(copy)
