"""The worker side: a stage body runs with its threads, seed and device, then the process is left as it was."""

import torch

from orchestrator.dag import Resources, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.body import Placement, run_stage_body
from orchestrator.engine.fingerprint import stage_seed
from orchestrator.engine.task import StageTask
from tests.unit.orchestrator.engine.toy import random_draw


def test_stage_body_sets_threads_seed_and_device_then_restores(tmp_path):
    store = ArtifactStore(str(tmp_path))
    stage = Stage("draw", random_draw, (), ("draw",), resources=Resources(num_cpus=1))
    before = torch.get_num_threads()
    first = run_stage_body(StageTask(stage, "fp-a", {}, store.uri, "run", 7, 1), Placement())
    second = run_stage_body(StageTask(stage, "fp-b", {}, store.uri, "run", 7, 1), Placement())
    a, b = store.load(first.outputs["draw"]), store.load(second.outputs["draw"])
    assert torch.equal(a["x"], b["x"])  # the global torch RNG is seeded per stage
    assert a["seed"] == stage_seed(7, "draw") != stage_seed(8, "draw")
    assert a["device"] == "cpu"
    assert torch.get_num_threads() == before
    assert store.read_manifest("fp-a") == first
