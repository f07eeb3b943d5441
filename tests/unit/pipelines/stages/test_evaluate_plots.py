"""CReST's evaluate stage draws its confusion matrix with the stage as title and each class by its dataset id.

Why: the image said neither which stage it came from nor, for a task of some classes (`data.classes`
[5, 6, 7], relabelled 0..2 by the split), which classes its rows were: it numbered them 0..2.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from orchestrator.dag import StageContext
from pipelines import plots
from pipelines.evaluation import evaluate_model
from pipelines.models import create_model
from pipelines.schema import DataSection
from pipelines.split import SPLIT_SCHEMA
from pipelines.stages import common
from pipelines.stages.evaluate import evaluate_generation

DATA = DataSection(name="digits", classes=[5, 6, 7])
ROWS = 30


def test_confusion_matrix_names_the_stage_and_the_datasets_classes() -> None:
    labels = common.dataset_of(DATA).train.labels.numpy()
    ids = np.flatnonzero(np.isin(labels, DATA.classes))[:ROWS]  # the split numbers the task's classes 0..2
    split = pa.table(
        {
            "sample_id": ids.astype(np.int64),
            "label": np.searchsorted(DATA.classes, labels[ids]).astype(np.int32),
            "subset": ["test", "labeled"] * (ROWS // 2),
        },
        schema=SPLIT_SCHEMA,
    )
    torch.manual_seed(0)
    channels = int(common.dataset_of(DATA).train.images.shape[1])
    network = create_model("small_cnn", 3, channels)
    checkpoint = common.model_checkpoint(network, "small_cnn", 3, channels, 0.0)
    ctx = StageContext(run_id="t", stage="g01/evaluate", generation=1, seed=0, device="cpu", attempt=1)
    params = {
        "data": DATA,
        "batch_size": 16,
        "tail_fraction": 0.3,
        "io": {"split": "split", "model": "model", "evaluation": "evaluation"},
    }
    drawn = evaluate_generation(ctx, {"split": split, "model": checkpoint}, params).files["confusion.png"]

    _, images, truth = common.subset_images(DATA, split, "test")
    model = common.load_model(checkpoint, "cpu")
    confusion = evaluate_model(model, images, truth, 3, "cpu", 16)["confusion"]
    assert drawn == plots.confusion_matrix(confusion, ["5", "6", "7"], "g01/evaluate")
    assert drawn != plots.confusion_matrix(confusion)
