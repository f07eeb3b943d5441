"""The Learning without Forgetting stages: record the old network's outputs, train, evaluate both tasks.

`record_outputs` (`g01/record`) runs the old network on the NEW task's labeled images once, before
training, and stores its logits (sample_id, logits[C_old]). `learn_without_forgetting` trains the
two-headed network by `mode` (lwf, finetune, joint; pipelines.training.lwf) and stores it as one
registered model whose first C_old outputs are the old task (`old_classes` in the checkpoint).
`evaluate_tasks` scores each task with its own head on its own test split.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from orchestrator.dag import StageContext, StageResult
from pipelines.evaluation import class_metrics
from pipelines.lwf import TwoHeads
from pipelines.pseudo_label import predict_probs
from pipelines.stages.augmentation import input_noise
from pipelines.stages.common import (
    artifact,
    labeled_class_counts,
    load_model,
    model_checkpoint,
    num_classes_of,
    output_name,
    prefixed,
    settings_from,
    stage_generator,
    subset_tensors,
)
from pipelines.stages.evaluate import class_names, evaluation_files
from pipelines.stages.pretrained import schedule_of
from pipelines.training.lwf import LwfSettings, train_lwf
from pipelines.transfer import outputs

RECORDED = "logits"
TASK_EVALUATION_SCHEMA = pa.schema(
    [
        pa.field("task", pa.string(), nullable=False),
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("recall", pa.float32(), nullable=False),
    ]
)


def recorded_schema(old_classes: int) -> pa.Schema:
    """The recorded outputs: one row per new-task labeled image, its old-network logits as a fixed-size list."""
    item = pa.field("element", pa.float32(), nullable=False)
    return pa.schema(
        [
            pa.field("sample_id", pa.int64(), nullable=False),
            pa.field(RECORDED, pa.list_(item, old_classes), nullable=False),
        ]
    )


def record_outputs(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """The old network's logits on the new task's labeled images (clean, eval mode), before any training."""
    old = load_model(artifact(inputs, params, "old_model"), ctx.device)
    ids, images, _ = subset_tensors(params["data"], artifact(inputs, params, "split"), "labeled")
    logits = outputs(old, images, params["batch_size"], ctx.device)
    flat = pa.array(logits.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, logits.shape[1])
    table = pa.Table.from_arrays([pa.array(ids, pa.int64()), column], schema=recorded_schema(logits.shape[1]))
    return StageResult(outputs={output_name(params, "recorded"): table}, metrics={"recorded": float(len(ids))})


def _recorded_rows(table: pa.Table, ids: np.ndarray) -> torch.Tensor:
    """The recorded logits in the order of ``ids`` (the split's labeled rows)."""
    row_of = {int(sample): row for row, sample in enumerate(table.column("sample_id").to_numpy())}
    rows = np.fromiter((row_of[int(sample)] for sample in ids), dtype=np.int64, count=len(ids))
    width = table.schema.field(RECORDED).type.list_size
    values = table.column(RECORDED).combine_chunks().flatten().to_numpy().reshape(-1, width)
    return torch.from_numpy(np.array(values[rows], dtype=np.float32))


def lwf_settings(params: Mapping[str, Any]) -> LwfSettings:
    """The loop's settings: `train`, the branch's mode (lwf, finetune, joint), `lwf`'s loss and `init`'s freezing."""
    lwf = params["lwf"]
    return settings_from(
        LwfSettings,
        params["train"],
        mode=params["mode"],
        lambda_old=lwf.lambda_old,
        temperature=lwf.temperature,
        **schedule_of(params["init"]),
    )


def learn_without_forgetting(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Add a new head to the old network and train both tasks' heads by ``params["mode"]``."""
    generator = stage_generator(ctx)
    data, old_data, train = params["data"], params["old_data"], params["train"]
    old_checkpoint = artifact(inputs, params, "old_model")
    if old_checkpoint["num_classes"] != num_classes_of(old_data):
        raise ValueError(
            f"{ctx.stage}: the old network has {old_checkpoint['num_classes']} outputs, but lwf.old_classes names "
            f"{num_classes_of(old_data)} classes; name the classes the old network was trained on"
        )
    network = TwoHeads(load_model(old_checkpoint, "cpu"), num_classes_of(data))
    ids, images, targets = subset_tensors(data, artifact(inputs, params, "split"), "labeled")
    recorded = artifact(inputs, params, "recorded")
    old_images = old_targets = None
    if params["mode"] == "joint":
        _, old_images, old_targets = subset_tensors(old_data, artifact(inputs, params, "old_split"), "labeled")
    settings = lwf_settings(params)
    trained = train_lwf(
        network,
        images,
        targets,
        settings,
        input_noise(train.augment, params["augment"], data),
        ctx.device,
        generator,
        recorded=None if recorded is None else _recorded_rows(recorded, ids),
        old_images=old_images,
        old_targets=old_targets,
        report=ctx.report,
        report_every=train.report_every,
        progress=ctx.progress,
    )
    merged = trained.merged().cpu()
    total = trained.old_classes + trained.new_head.out_features
    checkpoint = model_checkpoint(
        merged, old_checkpoint["model"], total, int(images.shape[1]), old_checkpoint["dropout"], images.shape[2:]
    )
    metrics = {"new_size": float(len(targets)), "old_size": 0.0 if old_images is None else float(len(old_images))}
    if ctx.series:
        metrics.update(ctx.series[-1][1])
    return StageResult(
        outputs={output_name(params, "model"): {**checkpoint, "old_classes": trained.old_classes}},
        metrics=prefixed(metrics, params.get("metric_prefix", "")),
    )


def evaluate_tasks(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Old-task accuracy with the old head on the old test split, new-task accuracy with the new head on the new one.

    ``balanced_accuracy`` is the mean recall over the classes of both tasks (each scored by its own head).
    Each task also gets ``TASK_recall/CLASS`` and ``TASK_precision/CLASS`` and the files every evaluation
    logs (``per_class_TASK.png``, ``confusion_TASK.png``, ``classes_TASK.json``), so what was forgotten
    shows class by class, named by the dataset's own ids (digits 5-9, not 0-4).
    """
    checkpoint = artifact(inputs, params, "model")
    model = load_model(checkpoint, ctx.device)
    old_classes, batch = int(checkpoint["old_classes"]), params["batch_size"]
    new_classes = int(checkpoint["num_classes"]) - old_classes
    tasks = {
        "old": (params["old_data"], artifact(inputs, params, "old_split"), slice(0, old_classes), old_classes),
        "new": (params["data"], artifact(inputs, params, "split"), slice(old_classes, None), new_classes),
    }
    metrics: dict[str, float] = {}
    files: dict[str, bytes] = {}
    columns: dict[str, list] = {"task": [], "class_id": [], "recall": []}
    for task, (data, split, head, width) in tasks.items():
        _, images, labels = subset_tensors(data, split, "test")
        probs = predict_probs(model, images, batch, ctx.device)
        result = class_metrics(probs[:, head].argmax(axis=1), labels.numpy(), width)  # each task by its own head
        metrics[f"{task}_accuracy"] = result["accuracy"]
        metrics[f"{task}_balanced_accuracy"] = result["balanced_accuracy"]
        names = class_names(data, width)
        metrics.update(per_class_metrics(task, names, result))
        counts = labeled_class_counts(split, width).tolist()
        files.update(evaluation_files(result, counts, names, data, f"{ctx.stage} ({task} task)", f"_{task}"))
        columns["task"] += [task] * width
        columns["class_id"] += list(range(width))
        columns["recall"] += result["recall"]
    metrics["balanced_accuracy"] = float(np.nanmean(columns["recall"]))
    table = pa.table(columns, schema=TASK_EVALUATION_SCHEMA)
    return StageResult(
        outputs={output_name(params, "evaluation"): table},
        metrics=prefixed(metrics, params.get("metric_prefix", "")),
        files=files,
    )


def per_class_metrics(task: str, names: list[int], result: Mapping[str, Any]) -> dict[str, float]:
    """``TASK_recall/NAME`` and ``TASK_precision/NAME`` of each class of one task."""
    found = {f"{task}_recall/{name}": float(r) for name, r in zip(names, result["recall"])}
    found.update({f"{task}_precision/{name}": float(p) for name, p in zip(names, result["precision"])})
    return found
