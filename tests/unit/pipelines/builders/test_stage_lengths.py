"""A stage with its own length (pretraining, the hint stage, the old network) has room for train's warm-up.

Before, `domain.pretrain_steps=5` beside `train.warmup_steps: 10` validated, and the run failed in that
stage (exit 1) with a resume that failed alike; `train.steps=5` was already refused when the file was read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.pipeline_files import load_pipeline_file
from orchestrator.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ("domain_similarity_digits.yaml", "domain.pretrain_steps"),
        ("transfer_digits.yaml", "transfer.pretrain_steps"),
        ("lwf_digits.yaml", "lwf.old_steps"),
        ("fitnets_digits.yaml", "fitnets.hint_steps"),
    ],
)
def test_a_stage_shorter_than_the_warmup_is_refused_when_the_file_is_read(config: str, key: str) -> None:
    path = str(CONFIGS / config)
    with pytest.raises(ConfigError) as info:
        load_pipeline_file(path, [key + "=5", "train.warmup_steps=10"], local=False)
    assert info.value.problems == [
        f"{key}: expected more steps than train.warmup_steps (10), got 5; raise {key} (or lower "
        f"train.warmup_steps) (set on the command line: {key}=5)"
    ]
    load_pipeline_file(path, [key + "=11", "train.warmup_steps=10"], local=False)  # room for the warm-up: valid
