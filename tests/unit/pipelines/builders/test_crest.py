"""The CReST builder: stage params are the config's sections, each stage carrying only the part it reads."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli.pipeline_files import load_pipeline_config
from pipelines.builders import crest
from pipelines.datasets.catalog import flips
from pipelines.stages.common import image_sources
from tests.unit.pipelines.helpers import config, problems


def test_stage_params_are_the_validated_sections_themselves() -> None:
    cfg = config(crest.CrestConfig, **{"crest.generations": 2})
    by_name = {stage.name: stage for stage in crest.build(cfg).stages}
    train = by_name["g01/train"].params
    assert train["train"] is cfg.train and train["data"] is cfg.data and train["augment"] is cfg.augment
    assert train["crest"] == crest.alignment_of(cfg.crest, 1)
    assert train["crest"].temperature == cfg.crest.t_min  # the last of two generations: the end of the schedule
    assert (by_name["g00/rebalance"].params["alpha"], by_name["g00/rebalance"].params["selection"]) == (3.0, "top")


def test_rebalance_knobs_leave_the_other_stages_params_alone() -> None:
    """A sweep over crest.alpha / crest.selection reruns only the rebalance stages (and what reads their picks)."""
    base = {s.name: s.params for s in crest.build(config(crest.CrestConfig)).stages}
    swept_config = config(crest.CrestConfig, **{"crest.alpha": 1.0, "crest.selection": "bernoulli"})
    swept = {s.name: s.params for s in crest.build(swept_config).stages}
    changed = sorted(name for name in base if base[name] != swept[name])
    assert changed == ["g00/rebalance", "g01/rebalance"]


def test_schedule_knobs_leave_the_stages_they_cannot_change_alone() -> None:
    """t_min, the schedule and the number of generations move the temperatures of later generations only:
    generation 0 (always 1.0) stays cached, and CReST without alignment keeps every generation's model."""

    def train_params(**overrides: object) -> dict[str, object]:
        return {s.name: s.params for s in crest.build(config(crest.CrestConfig, **overrides)).stages}

    base = train_params()
    for change in ({"crest.t_min": 0.3}, {"crest.schedule": "cosine"}, {"crest.generations": 4}):
        changed = train_params(**change)
        assert changed["g00/train"] == base["g00/train"], change
        assert changed["g01/train"] != base["g01/train"] or change == {"crest.schedule": "cosine"}, change
    plain = train_params(**{"crest.alignment": False})
    longer = train_params(**{"crest.alignment": False, "crest.generations": 4, "crest.t_min": 0.2})
    assert all(longer[name] == params for name, params in plain.items() if name.endswith("/train"))


def test_fixmatch_bounds_are_checked_once_at_the_config_boundary() -> None:
    """FixMatchSettings checks nothing again: the `train` section rejects the values, both reported together."""
    message = problems(crest.CrestConfig, **{"train.steps": 0, "train.threshold": 1.5})
    assert "2 problem" in message and "train.steps" in message and "train.threshold" in message


def test_image_size_is_for_in_memory_datasets_only() -> None:
    message = problems(crest.CrestConfig, **{"data.name": "parquet", "data.uri": "/x", "data.image_size": 8})
    assert "data.image_size" in message and "sharded" in message
    assert "data.image_size" in problems(crest.CrestConfig, **{"data.image_size": 2})
    assert config(crest.CrestConfig, **{"data.image_size": 8}).data.image_size == 8


def test_the_demo_trains_on_digits_upsampled_to_16x16() -> None:
    """Ablation (benchmarks/science_ablation.py): native 8x8 digits cost FixMatch 6.5 and CReST+ 3.0 points of balanced
    accuracy (5 of 5 and 4 of 5 seeds), so the demo reads them at 16x16, where both of small_cnn's pools act."""
    demo = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "crest_digits.yaml"
    _, cfg = load_pipeline_config(str(demo), [])
    assert image_sources(cfg.data)[0].image_shape == (1, 16, 16)
    assert not flips(cfg.augment, cfg.data)  # digits are never mirrored unless asked
