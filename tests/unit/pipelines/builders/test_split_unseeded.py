"""Every pipeline's split stages ignore the run's `seed` (`data.fold` draws the split), and say so.

Why: a sweep over `seed` drew the same data split again in every run (6-11 s each); a split stage declared
unseeded (``Stage.seeded`` False) is fingerprinted without the seed, so its cached table is reused. Every other
stage stays seeded, so its fingerprint, and every cache written under it, is unchanged.
"""

from pathlib import Path

import pytest

from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.config import load_yaml
from orchestrator.dag import StageContext
from pipelines.data import DATASET_REQUIRES_ROOT
from pipelines.datasets.catalog import SHARDED
from pipelines.registry import PIPELINES
from pipelines.stages import refs

ROOT = Path(__file__).resolve().parents[4]
SPLIT_BODIES = (refs.split_data, refs.split_supervised)


def reads_no_files(path: Path) -> bool:
    """Whether a bundled config reads a built-in dataset (digits, synthetic): its split runs on any machine."""
    name = (load_yaml(path).get("data") or {}).get("name", "digits")
    return name not in DATASET_REQUIRES_ROOT and name != SHARDED


# Every registered pipeline from its defaults, and every bundled config whose data any machine has: a new
# pipeline is checked as soon as it is registered, whatever its YAML is called.
CASES = [f"defaults:{name}" for name in sorted(PIPELINES)] + [
    path.name for path in sorted((ROOT / "pipelines" / "configs").glob("*.yaml")) if reads_no_files(path)
]


def built(case: str):
    if case.startswith("defaults:"):
        spec = PIPELINES[case.removeprefix("defaults:")]
        return spec.build(spec.config_model())
    spec, config = load_pipeline_config(str(ROOT / "pipelines" / "configs" / case), [])
    return spec.build(config)


def context(seed: int, stage: str) -> StageContext:
    return StageContext(run_id="r", stage=stage, generation=None, seed=seed, device="cpu", attempt=1)


@pytest.mark.parametrize("case", CASES)
def test_split_stages_are_unseeded_and_every_other_stage_is_seeded(case):
    stages = built(case).stages
    splits = [stage for stage in stages if stage.fn in SPLIT_BODIES]
    assert splits, "every pipeline starts from a split"
    assert all(not stage.seeded for stage in splits)
    assert all(stage.seeded for stage in stages if stage.fn not in SPLIT_BODIES)


@pytest.mark.parametrize("case", CASES)
def test_a_split_stage_draws_the_same_table_under_any_run_seed(case):
    """What the declaration rests on: the split bodies read `data`, never ``ctx.seed``."""
    for stage in (s for s in built(case).stages if s.fn in SPLIT_BODIES):
        first, second = (stage.fn(context(seed, stage.name), {}, stage.params) for seed in (0, 1))
        for name in stage.outputs:
            assert first.outputs[name].equals(second.outputs[name], check_metadata=True)
        assert first.metrics == second.metrics
