"""The selections' per-class metrics and files name each class by its dataset id, as evaluate's do.

Why: with `data.classes=[3,5,7]` evaluate logged `recall/3`, `recall/5`, `recall/7` but CReST's
rebalance logged `kept/0..2` and `rate/0..2` (positions in the model), so with classes [0,2,4]
`kept/2` (digit 4) and `recall/2` (digit 2) were two classes under one suffix.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pipelines.pseudo_label import to_table
from pipelines.schema import DataSection
from pipelines.split import SPLIT_SCHEMA
from pipelines.stages import filter as filter_stage
from pipelines.stages import rebalance as rebalance_stage
from pipelines.stages.evaluate import class_names
from tests.unit.pipelines.helpers import ctx

SUBSET = DataSection(name="synthetic", classes=[3, 5, 7])  # the model's classes 0, 1, 2 are digits 3, 5, 7
IO = {"split": "s", "pseudo_labels": "p", "picks": "k"}


def split_of(labeled: list[int], unlabeled: list[int]) -> pa.Table:
    """Labeled rows first, then unlabeled ones, ids 0..n-1 in order (the split keeps ids sorted)."""
    labels = labeled + unlabeled
    subsets = ["labeled"] * len(labeled) + ["unlabeled"] * len(unlabeled)
    return pa.table({"sample_id": list(range(len(labels))), "label": labels, "subset": subsets}, schema=SPLIT_SCHEMA)


def confident_table(ids: list[int], predicted: list[int], width: int) -> pa.Table:
    """A pseudo-label table predicting ``predicted[i]`` (a model class) for ``ids[i]`` at confidence 0.9."""
    probs = np.full((len(ids), width), 0.1 / (width - 1), dtype=np.float32)
    probs[np.arange(len(ids)), predicted] = 0.9
    return to_table(ids, probs, 0, "m")


def suffixes(metrics: dict[str, float], family: str) -> list[str]:
    return sorted((key.split("/", 1)[1] for key in metrics if key.startswith(family + "/")), key=int)


def evaluation_suffixes(data: DataSection, num_classes: int) -> list[str]:
    """The suffixes evaluate gives `recall/<c>` and `precision/<c>` (its own mapping of model class to dataset id)."""
    return [str(i) for i in class_names(data, num_classes)]


def subset_inputs() -> dict[str, pa.Table]:
    """Model class 0 (digit 3) is the head (4 labeled), class 2 (digit 7) the tail (1 labeled); every unlabeled
    image is predicted as its true class: 2 as class 0, 1 as class 1, 2 as class 2."""
    labeled = [0, 0, 0, 0, 1, 1, 2]
    unlabeled = [0, 0, 1, 2, 2]
    first = len(labeled)
    table = confident_table(list(range(first, first + len(unlabeled))), unlabeled, 3)
    return {"s": split_of(labeled, unlabeled), "p": table}


def test_rebalance_names_kept_and_rate_by_dataset_class_id() -> None:
    params = {"io": IO, "data": SUBSET, "alpha": 3.0, "selection": "top", "generation": 0}
    result = rebalance_stage.rebalance_generation(ctx("g00/rebalance"), subset_inputs(), params)
    metrics = result.metrics
    assert suffixes(metrics, "kept") == suffixes(metrics, "rate") == evaluation_suffixes(SUBSET, 3) == ["3", "5", "7"]
    assert metrics["rate/7"] == 1.0, "digit 7 (model class 2) is the rarest labeled class: it keeps every pick"
    assert metrics["rate/3"] < metrics["rate/5"] < 1.0
    assert metrics["kept/7"] == 2.0, "both images predicted as digit 7"


def test_rebalance_logs_picks_csv_and_histogram_by_dataset_class_id() -> None:
    params = {"io": IO, "data": SUBSET, "alpha": 3.0, "selection": "top", "generation": 0}
    result = rebalance_stage.rebalance_generation(ctx("g00/rebalance"), subset_inputs(), params)
    picks = result.outputs["k"]
    logged = pacsv.read_csv(pa.BufferReader(result.files["picks.csv"]))
    assert logged.column_names == picks.column_names
    assert logged.column("sample_id").to_pylist() == picks.column("sample_id").to_pylist()
    by_id = dict(zip(picks.column("sample_id").to_pylist(), picks.column("label").to_pylist(), strict=True))
    assert by_id[10] == by_id[11] == 2, "the picks artifact keeps the model's class, which training reads"
    logged_by_id = dict(zip(logged.column("sample_id").to_pylist(), logged.column("label").to_pylist(), strict=True))
    assert logged_by_id[10] == logged_by_id[11] == 7, "the CSV names digit 7, as kept/7 and recall/7 do"
    assert result.files["pseudo_label_histogram.png"].startswith(b"\x89PNG")


def test_filter_names_kept_and_picks_csv_by_dataset_class_id() -> None:
    params = {
        "io": IO,
        "data": SUBSET,
        "min_confidence": 0.5,
        "min_confidence_key": "noisy.min_confidence",
        "per_class": 1,
        "generation": 0,
    }
    result = filter_stage.filter_pseudo_labels(ctx("g00/filter"), subset_inputs(), params)
    assert suffixes(result.metrics, "kept") == evaluation_suffixes(SUBSET, 3) == ["3", "5", "7"]
    assert (result.metrics["kept/3"], result.metrics["kept/5"], result.metrics["kept/7"]) == (1.0, 1.0, 1.0)
    logged = pacsv.read_csv(pa.BufferReader(result.files["picks.csv"]))
    assert sorted(logged.column("label").to_pylist()) == [3, 5, 7]
    assert sorted(result.outputs["k"].column("label").to_pylist()) == [0, 1, 2]


@pytest.mark.parametrize("selection", ["rebalance", "filter"])
def test_a_run_of_every_class_names_them_by_position_as_before(selection: str) -> None:
    """Without `data.classes` the dataset ids are the positions: the same names and the same CSV as before."""
    data = DataSection(name="synthetic")  # 10 classes
    labeled = [0, 0, 1, *range(2, 10)]
    first = len(labeled)
    inputs = {"s": split_of(labeled, [0, 1, 9]), "p": confident_table([first, first + 1, first + 2], [0, 1, 9], 10)}
    if selection == "rebalance":
        params = {"io": IO, "data": data, "alpha": 3.0, "selection": "top", "generation": 0}
        result = rebalance_stage.rebalance_generation(ctx(), inputs, params)
        assert suffixes(result.metrics, "rate") == [str(c) for c in range(10)]
    else:
        params = {"io": IO, "data": data, "min_confidence": 0.5, "min_confidence_key": "k", "per_class": 1}
        result = filter_stage.filter_pseudo_labels(ctx(), inputs, {**params, "generation": 0})
    assert suffixes(result.metrics, "kept") == evaluation_suffixes(data, 10) == [str(c) for c in range(10)]
    logged = pacsv.read_csv(pa.BufferReader(result.files["picks.csv"]))
    assert logged.column("label").to_pylist() == result.outputs["k"].column("label").to_pylist()
