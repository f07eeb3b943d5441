"""The supervised train stage's metrics: what each train stage logs, per step and at its end, under which name.

Each stage runs for real (small_cnn, a few steps on the synthetic digits) as the builders wire it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from orchestrator.dag import Stage, StageContext
from pipelines.builders import distill, knowledge_evolution, noisy_student
from pipelines.pseudo_label import picks_table, to_table
from pipelines.split import SPLIT_SCHEMA
from pipelines.stages import common, train_network
from tests.unit.pipelines.helpers import config, ctx

TINY = {"data.name": "synthetic", "train.steps": 4, "train.report_every": 2, "train.batch_size": 8}
LABELED = np.arange(0, 2000, 50)  # 40 of the synthetic set's 2000 images, every class among them


def _split(data: object) -> pa.Table:
    labels = common.dataset_of(data).train.labels.numpy()[LABELED]
    columns = {"sample_id": LABELED, "label": labels, "subset": ["labeled"] * len(LABELED)}
    return pa.table(columns, schema=SPLIT_SCHEMA)


def _run(stage: Stage, inputs: dict[str, object]) -> tuple[dict[str, float], StageContext]:
    """The stage's final metrics and its context (whose series is what MLflow draws as curves)."""
    context = ctx(stage.name)
    result = train_network.train_network(context, inputs, stage.params)
    return result.metrics, context


def _stage(pipeline: object, name: str) -> Stage:
    return next(stage for stage in pipeline.stages if stage.name == name)


def test_a_baseline_logs_its_curves_under_the_names_of_its_final_values() -> None:
    """Before, `baseline/train` drew `loss` and `lr` per step but ended with `baseline_loss`, `baseline_lr`."""
    cfg = config(distill.DistillConfig, **TINY)
    stage = _stage(distill.build(cfg), "baseline/train")
    metrics, context = _run(stage, {"data/split": _split(cfg.data)})
    steps = [step for step, _ in context.series]
    assert steps == [2, 4]
    curves = set(context.series[-1][1])
    assert curves == {"baseline_loss", "baseline_loss_x", "baseline_lr"}
    assert all(metrics[name] == value for name, value in context.series[-1][1].items()), "each curve ends at its final"
    assert all(name.startswith("baseline_") for name in metrics), sorted(metrics)


def test_supervised_train_stages_log_no_pseudo_label_metrics() -> None:
    """KE and distillation have no pseudo-labels: `loss_u` and `pseudo_size` were curves and values of zeros."""
    ke = config(knowledge_evolution.KnowledgeEvolutionConfig, **TINY, **{"ke.generations": 1})
    kd = config(distill.DistillConfig, **TINY)
    for cfg, pipeline in ((ke, knowledge_evolution.build(ke)), (kd, distill.build(kd))):
        metrics, context = _run(_stage(pipeline, "g00/train"), {"data/split": _split(cfg.data)})
        assert set(context.series[-1][1]) == {"loss", "loss_x", "lr"}
        assert not {"loss_u", "pseudo_size"} & set(metrics), sorted(metrics)
        assert metrics["labeled_size"] == len(LABELED)


def test_a_noisy_student_logs_its_pseudo_labeled_set_and_loss() -> None:
    """The student still reports what only it has: the pseudo-labeled loss and how many picks it trained on."""
    cfg = config(noisy_student.NoisyStudentConfig, **TINY, **{"noisy.iterations": 1})
    stage = _stage(noisy_student.build(cfg), "g01/train")
    unlabeled = np.arange(1, 2000, 100)
    probs = np.full((len(unlabeled), 10), 0.05, dtype=np.float32)
    probs[np.arange(len(unlabeled)), np.arange(len(unlabeled)) % 10] = 0.55
    inputs = {
        "data/split": _split(cfg.data),
        "g00/picks": picks_table(unlabeled, np.arange(len(unlabeled)) % 10, probs.max(axis=1), 0),
        "g00/pseudo_labels": to_table(unlabeled, probs, 0, "small_cnn"),
    }
    metrics, context = _run(stage, inputs)
    assert set(context.series[-1][1]) == {"loss", "loss_x", "loss_u", "lr"}
    assert metrics["pseudo_size"] == len(unlabeled) and metrics["loss_u"] > 0
