"""Relay's builders declare their stages' input roles (`Stage.input_roles`) from the stage's io, as the runner
used to derive them from ``params["io"]``, and leave ``params`` (and so every fingerprint) as it was."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.dag import Parallelism
from orchestrator.engine.fingerprint import fingerprint
from pipelines.stages import refs

CONFIGS = sorted((Path(__file__).resolve().parents[4] / "pipelines" / "configs").glob("*.yaml"))


def test_make_stage_declares_the_roles_of_its_inputs_and_keeps_io_in_params() -> None:
    io = {"split": "data/split", "teacher": "g00/model", "model": "g01/model"}
    stage = refs.make_stage(
        "g01/train", refs.train_network, io, ("g01/model",), {"lr": 0.1}, {"num_cpus": 1}, 1, Parallelism.DATA
    )
    assert stage.input_roles == {"split": "data/split", "teacher": "g00/model"}, "an output has no input role"
    assert stage.params == {"lr": 0.1, "io": io}, "params, part of the fingerprint, are as they were"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_pipeline_declares_the_roles_the_runner_read_from_params_before(path: Path) -> None:
    """The records' ``input_roles`` (the tracker's teacher, ``relay.init_from``) are what they were, and the
    declaration leaves every stage's fingerprint alone."""
    spec, config = load_pipeline_config(str(path), [], local=False)
    for stage in spec.build(config).stages:
        before = {role: name for role, name in stage.params.get("io", {}).items() if name in stage.inputs}
        assert stage.input_roles == before, stage.name
        digests = {name: f"digest of {name}" for name in stage.inputs}
        undeclared = dataclasses.replace(stage, input_roles={})
        assert fingerprint(stage, digests, "code", 3) == fingerprint(undeclared, digests, "code", 3), stage.name
