"""`relay resume` on data that changed since the run started says so, with advice a resume can follow.

Before the fix: a `data.uri` dataset imported again said "point data.uri at the pinned dataset or update
data.digest", and an image folder that lost images said "Set head_count to at most ...": a
resume runs the config recorded when the run started, so neither can be done. Real datasets here:
a real import, a real image folder, the crest pipeline's own preflight and pins.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli.pipeline_files import load_pipeline_config
from orchestrator.cli.run.resume_checks import check_data_unchanged
from orchestrator.errors import ConfigError
from pipelines.datasets import imports
from pipelines.registry import PIPELINES

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")
SPEC = PIPELINES["crest"]


def _recorded(*overrides: str):
    """The config as `relay run` records it: the data's pins written in."""
    config = load_pipeline_config(SMOKE, list(overrides), PIPELINES)[1]
    pins = SPEC.data.pins(config)
    data = config.data.model_copy(update={k.split(".", 1)[1]: v for k, v in pins.items() if k.startswith("data.")})
    return config.model_copy(update={"data": data})


def _refusal(config) -> str:
    with pytest.raises(ConfigError) as raised:
        check_data_unchanged(SPEC, config, "r1", "config.yaml")
    (problem,) = raised.value.problems
    return problem


def test_a_dataset_imported_again_is_refused_as_changed_data(tmp_path: Path) -> None:
    dest = str(tmp_path / "d")
    imports.import_dataset("digits", dest, {})
    config = _recorded("data.name=parquet", f"data.uri={dest}")
    check_data_unchanged(SPEC, config, "r1", "config.yaml")  # unchanged: the resume goes on
    shutil.rmtree(dest)
    imports.import_dataset("synthetic", dest, {})
    problem = _refusal(config)
    assert problem.startswith(f"data.uri: the data changed since run r1 started, or is gone: {dest} holds dataset ")
    assert "Put the data back as it was to resume, or start a new run" in problem
    assert "update data.digest" not in problem and "point data.uri" not in problem


def test_an_image_folder_that_no_longer_fits_head_count_is_refused_as_changed_data(tmp_path: Path) -> None:
    root = tmp_path / "images"
    for name in ("cat", "dog", "owl"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((4, 4, 3), i, dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    split = ["data.head_count=8", "data.imbalance_ratio=2", "data.holdout_per_class=2", "data.labeled_fraction=0.5"]
    config = _recorded("data.name=imagefolder", f"data.root={root}", *split)
    check_data_unchanged(SPEC, config, "r1", "config.yaml")
    for path in sorted((root / "train" / "cat").iterdir())[:8]:
        path.unlink()
    problem = _refusal(config)
    assert problem.startswith("data: the data changed since run r1 started, or is gone: head_count 8 does not fit"), (
        problem
    )
    assert "Put the data back as it was to resume, or start a new run" in problem
    assert "Set head_count" not in problem and "lower holdout_per_class" not in problem
