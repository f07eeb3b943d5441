"""A class-balanced run logs the weights it trained with, through the real `relay` CLI: stages in-process, a real
SQLite MLflow store, the real split Parquet.

Why: the weights follow from `train.class_balanced_beta` and the split's labeled counts, and no run showed them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.integration.relay_cli import ROOT, manifests, output_path, relay, runs_by_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CONFIG = ROOT / "pipelines" / "configs" / "class_balanced_digits.yaml"
BETA = 0.999  # the file's train.class_balanced_beta
SHORT = ("train.steps=10", "train.warmup_steps=9", "run.executor=local")


def run(workspace: Path, run_id: str, *overrides: str) -> dict:
    result = relay("run", str(CONFIG), *SHORT, *overrides, "--run-id", run_id, workspace=workspace)
    assert result.returncode == 0, result.stderr[-4000:]
    return runs_by_name(workspace, run_id)


def labeled_counts(workspace: Path) -> np.ndarray:
    """Labeled images per class, counted in the split table the run stored."""
    split = pq.read_table(output_path(manifests(workspace)["data/split"], "data/split"))
    labels = split.column("label").filter(pc.equal(split.column("subset"), "labeled")).to_numpy()
    return np.bincount(labels, minlength=10)


def test_the_train_stage_logs_each_class_weight_and_none_without_beta(tmp_path: Path) -> None:
    by_name = run(tmp_path, "cb-weights")
    logged = {
        int(key.rsplit("/", 1)[1]): value
        for key, value in by_name["g00/train"].data.metrics.items()
        if key.startswith("class_weight/")
    }
    counts = labeled_counts(tmp_path)
    assert counts.min() < counts.max(), "long-tailed digits: the weights differ by class"
    raw = (1 - BETA) / (1 - BETA ** counts.astype(np.float64))
    expected = raw / raw.sum() * len(counts)
    assert sorted(logged) == list(range(10))
    assert [logged[c] for c in range(10)] == pytest.approx(expected.tolist(), rel=1e-6)
    assert logged[int(np.argmin(counts))] == max(logged.values()), "the rarest class weighs most"

    plain = run(tmp_path, "cb-plain", "train.loss=ce", "train.class_balanced_beta=0")
    assert not [key for key in plain["g00/train"].data.metrics if "class_weight" in key]
