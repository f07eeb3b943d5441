"""`init.source` weights that changed after the run was planned: the stage, the runner and the resume agree.

Before the fix: the import stage said "start the run again to use the new weights", the runner's line under it
"Fix the cause. Resume with: relay resume RUN", and a resume on weights that no longer fit was
refused with "the data changed since run ... started". Real pieces here: the crest pipeline built
from the smoke config (its driver hashes the weights), the real import stage on a LocalExecutor,
a real artifact store and ledger, and the resume's own check on the run's recorded config.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.cli.records.run_notes import unfinished_note
from orchestrator.cli.run.resume_checks import check_data_unchanged
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.ledger import CONFIG_FILE, record_path
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner
from orchestrator.errors import ChangedWeightsError, ConfigError, StageError
from pipelines.models import create_model
from pipelines.registry import PIPELINES

SMOKE = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")
SPEC = PIPELINES["crest"]


def _weights(path: Path, seed: int) -> None:
    """Weights of the smoke model's shape (digits: 10 classes, 1 channel), different for each seed."""
    torch.manual_seed(seed)
    torch.save(create_model("small_cnn", 10, 1).state_dict(), path)


def _config(weights: Path):
    overrides = ["train.steps=10", "crest.generations=1", "run.executor=local", f"init.source={weights}"]
    return load_pipeline_config(SMOKE, overrides, PIPELINES)[1]


def test_weights_changed_after_planning_fail_the_import_with_both_ways_on(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="orchestrator")
    weights = tmp_path / "w.pt"
    _weights(weights, seed=1)
    store = ArtifactStore(str(tmp_path / "artifacts"))
    store.write_record(record_path("rw", CONFIG_FILE), b"pipeline: crest\nname: smoke\n")
    planned = SPEC.build(_config(weights))  # hashes the weights, as `relay run` does before the stages
    _weights(weights, seed=2)  # other weights of the same shape, written while the run waits

    with pytest.raises(StageError) as raised:
        Runner(store, LocalExecutor(), NullTracker(), "v1", 0).run(planned, "rw", stop_after="init/import")

    assert isinstance(raised.value.cause, ChangedWeightsError)
    said = str(raised.value.cause)
    assert f"the weights at {weights} changed after run rw was planned" in said
    assert "put back the weights it was planned with and `relay resume rw`" in said
    assert "to train from the new weights, start a new run (`relay run`)" in said
    assert "start the run again" not in said
    runner_line = caplog.text.rsplit("run rw failed: ", 1)[1]
    assert "Put back the weights the run was planned with and resume with: relay resume rw;" in (runner_line)
    assert "to train from the new weights, start a new run (relay run)" in runner_line
    assert "Fix the cause" not in runner_line

    note = unfinished_note(store, "rw")
    assert note is not None and "stage init/import failed: ChangedWeightsError: the weights at" in note
    assert "Once that cause is fixed" not in note  # the resume it named would take whichever weights are there


def test_a_resume_on_weights_that_no_longer_fit_says_the_weights_changed_not_the_data(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    _weights(weights, seed=1)
    config = _config(weights)
    check_data_unchanged(SPEC, config, "rw", "config.yaml")  # unchanged: the resume goes on
    torch.save({"conv.weight": torch.zeros(3, 3)}, weights)

    with pytest.raises(ConfigError) as raised:
        check_data_unchanged(SPEC, config, "rw", "config.yaml")
    problems = [p for p in raised.value.problems if p.startswith("init.source:")]
    assert problems and all(
        p.startswith("init.source: the weights changed since run rw started, or are gone: ") for p in problems
    ), problems
    assert all(
        p.endswith(
            "Put back the weights the run was planned with to resume, or start a new run with the weights as "
            "they are now (`relay run`)"
        )
        for p in problems
    )
    assert not any("the data changed" in p or "Put the data back" in p for p in raised.value.problems)
