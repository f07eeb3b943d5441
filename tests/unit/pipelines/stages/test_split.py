"""The split stages: the supervised split needs no unlabeled images; the preflight still checks the data."""

from __future__ import annotations

from pipelines import split
from pipelines.builders import knowledge_evolution as ke
from pipelines.stages import split as split_stage
from tests.unit.pipelines.helpers import config, ctx


def test_supervised_split_needs_no_unlabeled_images_but_still_checks_the_data() -> None:
    section = config(
        ke.KnowledgeEvolutionConfig, **{"data.name": "synthetic", "data.head_count": 100, "data.holdout_per_class": 20}
    ).data
    data = section.model_dump()
    assert split.preflight_split(data), "the CReST preflight insists on unlabeled images"
    assert split.preflight_supervised_split(data) == []
    assert "data" in split.preflight_supervised_split({**data, "head_count": 500})[0], (
        "too few images per class is still caught"
    )
    result = split_stage.split_supervised(ctx(), {}, {"data": section, "io": {"split": "data/split"}})
    assert (result.metrics["labeled_size"], result.metrics["unlabeled_size"], result.metrics["test_size"]) == (
        1000.0,
        0.0,
        200.0,
    )
