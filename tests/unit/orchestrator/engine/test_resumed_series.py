"""A stage resumed from its checkpoint keeps the metrics its cut-off attempt reported before that checkpoint.

Before the fix: a training stage interrupted after its step-20 checkpoint and resumed logged `loss` at steps 40-100 only
in MLflow (the manifest's series), against 20-100 for the same run uninterrupted: the cut-off attempt's points were
never stored. The stage body runs as every executor runs it (``run_stage_body``, a real store, its checkpointer).
"""

from typing import Any

import pyarrow as pa
import pytest

from orchestrator.dag import Stage, StageContext, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.body import Placement, run_stage_body
from orchestrator.engine.task import StageTask

FINGERPRINT = "c" * 64
STEPS = 6


class WorkerLost(RuntimeError):
    """What the first attempt dies of."""


def counting(ctx: StageContext, inputs: Any, params: dict[str, Any]) -> StageResult:
    """Reports a loss every step and checkpoints every second step, as a training loop does; dies at ``die_at``."""
    state = ctx.load_checkpoint()
    start = 0 if state is None else int(state["step"])
    for step in range(start + 1, STEPS + 1):
        ctx.report(step, {"loss": float(100 - step)})
        if step == params["die_at"]:
            raise WorkerLost(f"lost at step {step}")
        if step % 2 == 0:
            ctx.save_checkpoint({"step": step}, step)
    return StageResult(outputs={"out": pa.table({"steps": [STEPS]})})


def task(store: ArtifactStore, die_at: int, attempt: int) -> StageTask:
    stage = Stage("g00/train", counting, (), ("out",), params={"die_at": die_at}, generation=0)
    return StageTask(stage, FINGERPRINT, {}, store.uri, "run", 0, attempt, None)


def test_a_resumed_stage_keeps_the_points_reported_before_its_checkpoint(tmp_path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(WorkerLost):
        run_stage_body(task(store, die_at=5, attempt=1), Placement())  # checkpoints at 2 and 4, cut off at 5

    manifest = run_stage_body(task(store, die_at=0, attempt=2), Placement())

    assert manifest is not None
    assert [step for step, _ in manifest.series] == list(range(1, STEPS + 1))  # each step once, none lost
    assert [values["loss"] for _, values in manifest.series] == [float(100 - step) for step in range(1, STEPS + 1)]


def test_a_stage_that_starts_fresh_reports_only_its_own_points(tmp_path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    manifest = run_stage_body(task(store, die_at=0, attempt=1), Placement())
    assert manifest is not None
    assert [step for step, _ in manifest.series] == list(range(1, STEPS + 1))
