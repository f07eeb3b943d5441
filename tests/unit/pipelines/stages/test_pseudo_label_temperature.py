"""Noisy Student's temperature softens soft pseudo-labels only: hard ones are filtered on the teacher's plain softmax.

The pseudo-label and filter stages run for real (a small_cnn teacher on the synthetic digits) as the
builder wires them. Before, the pseudo-label stage stored max softmax(z / T) as the confidence that
`noisy.min_confidence` filters whatever the label type: with hard labels, the same teacher kept 40
pseudo-labels at T 2.5 and 280 at T 1.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from orchestrator.dag import Stage
from pipelines.builders import noisy_student
from pipelines.models import create_model
from pipelines.pseudo_label import predict_probs
from pipelines.split import SPLIT_SCHEMA
from pipelines.stages import common
from tests.unit.pipelines.helpers import config, ctx

LABELED = np.arange(0, 2000, 50)
UNLABELED = np.arange(3, 2000, 7)
MIN_CONFIDENCE = 0.35


def _config(label_type: str, temperature: float) -> noisy_student.NoisyStudentConfig:
    overrides = {
        "data.name": "synthetic",
        "noisy.iterations": 1,
        "noisy.label_type": label_type,
        "noisy.temperature": temperature,
        "noisy.min_confidence": MIN_CONFIDENCE,
    }
    return config(noisy_student.NoisyStudentConfig, **overrides)


def _split(data: object) -> pa.Table:
    labels = common.dataset_of(data).train.labels.numpy()
    ids = np.concatenate([LABELED, UNLABELED])
    subsets = ["labeled"] * len(LABELED) + ["unlabeled"] * len(UNLABELED)
    return pa.table({"sample_id": ids, "label": labels[ids], "subset": subsets}, schema=SPLIT_SCHEMA)


def _teacher() -> torch.nn.Module:
    """An untrained small_cnn whose classifier is scaled up, so its plain-softmax confidences spread across 0..1."""
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    with torch.no_grad():
        model.fc.weight.mul_(40.0)
    return model.eval()


def _stage(config: object, name: str) -> Stage:
    return next(stage for stage in noisy_student.build(config).stages if stage.name == name)


def _label_and_filter(label_type: str, temperature: float) -> tuple[pa.Table, pa.Table]:
    """(the g00 pseudo-label table, the picks the filter keeps of it)."""
    cfg = _config(label_type, temperature)
    checkpoint = common.model_checkpoint(_teacher(), "small_cnn", 10, 1, 0.0)
    inputs = {"data/split": _split(cfg.data), "g00/model": checkpoint}
    labeling = _stage(cfg, "g00/pseudo_label")
    labels = labeling.fn(ctx(labeling.name), inputs, labeling.params).outputs["g00/pseudo_labels"]
    inputs["g00/pseudo_labels"] = labels.read_all()  # streamed shard by shard; the store writes it as one table
    filtering = _stage(cfg, "g00/filter")
    picks = filtering.fn(ctx(filtering.name), inputs, filtering.params).outputs["g00/picks"]
    return inputs["g00/pseudo_labels"], picks


def _kept(picks: pa.Table) -> list[tuple[int, int]]:
    return sorted(zip(picks.column("sample_id").to_pylist(), picks.column("label").to_pylist(), strict=True))


def test_hard_pseudo_labels_keep_the_same_picks_whatever_the_temperature() -> None:
    table, picks = _label_and_filter("hard", 2.5)
    _, plain_picks = _label_and_filter("hard", 1.0)
    assert _kept(picks) == _kept(plain_picks)
    images = common.dataset_of(_config("hard", 1.0).data).train.images[UNLABELED]
    plain = predict_probs(_teacher(), images, 64, "cpu").max(axis=1)
    np.testing.assert_allclose(table.column("confidence").to_numpy(), plain, rtol=1e-5)
    assert 0 < np.sum(plain >= MIN_CONFIDENCE) < len(plain), "the filter must have something to decide"


def test_soft_pseudo_labels_are_tempered_and_filtered_as_tempered() -> None:
    """With soft labels T is the paper's: the table holds softmax(z / T), and the filter reads that."""
    table, picks = _label_and_filter("soft", 2.5)
    _, plain_picks = _label_and_filter("soft", 1.0)
    images = common.dataset_of(_config("soft", 2.5).data).train.images[UNLABELED]
    tempered = predict_probs(_teacher(), images, 64, "cpu", temperature=2.5).max(axis=1)
    np.testing.assert_allclose(table.column("confidence").to_numpy(), tempered, rtol=1e-5)
    assert len(set(_kept(picks))) < len(set(_kept(plain_picks)))
