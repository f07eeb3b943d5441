"""LwF's evaluation logs, for each task, the files every other evaluation logs: plots and classes.json.

Why: g01/evaluate, finetune/evaluate and joint/evaluate logged only per_class_old.png and
per_class_new.png: no confusion matrix and no classes.json saying which dataset class each
per-class metric's id stands for, unlike every other evaluation.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import torch

from orchestrator.dag import StageContext
from pipelines.models import create_model
from pipelines.schema import DataSection
from pipelines.split import SPLIT_SCHEMA
from pipelines.stages import common
from pipelines.stages.lwf import evaluate_tasks

OLD = DataSection(name="digits", classes=[0, 1, 2, 3, 4])
NEW = DataSection(name="digits", classes=[5, 6, 7, 8, 9])
ROWS = 20


def task_split(data: DataSection) -> pa.Table:
    """Half test, half labeled rows of the task's classes, relabelled 0..4 as the split does."""
    labels = common.dataset_of(data).train.labels.numpy()
    ids = np.flatnonzero(np.isin(labels, data.classes))[:ROWS]
    return pa.table(
        {
            "sample_id": ids.astype(np.int64),
            "label": np.searchsorted(data.classes, labels[ids]).astype(np.int32),
            "subset": ["test", "labeled"] * (ROWS // 2),
        },
        schema=SPLIT_SCHEMA,
    )


def test_each_task_gets_per_class_confusion_and_classes_files() -> None:
    torch.manual_seed(0)
    channels = int(common.dataset_of(NEW).train.images.shape[1])
    network = create_model("small_cnn", 10, channels)  # 5 old outputs, then 5 new ones
    checkpoint = {**common.model_checkpoint(network, "small_cnn", 10, channels, 0.0), "old_classes": 5}
    ctx = StageContext(run_id="t", stage="g01/evaluate", generation=1, seed=0, device="cpu", attempt=1)
    params = {
        "data": NEW,
        "old_data": OLD,
        "batch_size": 16,
        "io": {"split": "split", "old_split": "old_split", "model": "model", "evaluation": "evaluation"},
    }
    inputs = {"split": task_split(NEW), "old_split": task_split(OLD), "model": checkpoint}
    files = evaluate_tasks(ctx, inputs, params).files

    assert set(files) == {
        f"{stem}_{task}{ext}"
        for task in ("old", "new")
        for stem, ext in (("per_class", ".png"), ("confusion", ".png"), ("classes", ".json"))
    }
    assert all(files[name].startswith(b"\x89PNG") for name in files if name.endswith(".png"))
    new_classes = json.loads(files["classes_new.json"])
    assert [row["dataset_class"] for row in new_classes] == [5, 6, 7, 8, 9], "the digits' own ids, not 0-4"
    assert [row["class"] for row in new_classes] == [0, 1, 2, 3, 4]
    assert [row["dataset_class"] for row in json.loads(files["classes_old.json"])] == [0, 1, 2, 3, 4]
