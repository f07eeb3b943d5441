"""`relay validate` refuses a `tune.metric` the pipeline's stages never report, naming the ones they do.

Why: the evaluate body declared `slim_*` for every pipeline, though only Knowledge Evolution's generations
(with KELS masks) score a slim network, so `tune.metric=evaluate/slim_accuracy` on Noisy Student was valid
(exit 0) and every trial of the sweep failed once its first generation had trained and been evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_cli_writes_nothing import refused

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"
SLIM = "tune.metric=evaluate/slim_accuracy"


def sweep_of(config: str, key: str, *overrides: str) -> list[str]:
    return ["validate", str(CONFIGS / config), SLIM, f"tune.space={{{key}: {{uniform: [0.2, 0.9]}}}}", *overrides]


@pytest.mark.parametrize(
    ("config", "key", "overrides"),
    [
        ("noisy_student_digits.yaml", "noisy.min_confidence", ()),
        ("distill_digits.yaml", "train.lr", ()),
        ("ke_digits.yaml", "train.lr", ("ke.split_mode=wels",)),  # random masks: no slim network to cut out
        ("ke_digits.yaml", "train.lr", ("ke.generations=1",)),  # one generation reads no masks
    ],
)
def test_a_slim_metric_is_refused_where_no_stage_reports_it(cwd: Path, capsys, config, key, overrides) -> None:
    err = refused(sweep_of(config, key, *overrides), cwd, capsys)
    assert "tune.metric: stage g00/evaluate reports balanced_accuracy, accuracy" in err
    assert "dense_params, not 'slim_accuracy'; use one of those after `evaluate/`" in err


def test_knowledge_evolution_with_kels_masks_tunes_its_slim_network(cwd: Path, capsys) -> None:
    assert main(sweep_of("ke_digits.yaml", "train.lr")) == 0, capsys.readouterr().err
    assert "valid `ke` pipeline" in capsys.readouterr().out
