"""Noisy Student's builder: teacher, pseudo-labels, filter and students in the DAG; the config checks."""

from __future__ import annotations

import pytest

from pipelines.builders import distill, noisy_student
from tests.unit.pipelines.helpers import config, problems


def test_noisy_student_chains_teacher_pseudo_labels_filter_and_students() -> None:
    cfg = config(noisy_student.NoisyStudentConfig, **{"noisy.iterations": 2})
    pipeline = noisy_student.build(cfg)
    names = [stage.name for stage in pipeline.stages]
    assert names == [
        "data/split",
        "g00/train",
        "g00/evaluate",
        "g00/pseudo_label",
        "g00/filter",
        "g01/train",
        "g01/evaluate",
        "g01/pseudo_label",
        "g01/filter",
        "g02/train",
        "g02/evaluate",
    ]
    by_name = {stage.name: stage for stage in pipeline.stages}
    assert set(by_name["g01/train"].inputs) == {"data/split", "g00/picks", "g00/pseudo_labels"}
    assert set(by_name["g02/train"].inputs) == {"data/split", "g01/picks", "g01/pseudo_labels"}
    assert by_name["g01/pseudo_label"].inputs == ("data/split", "g01/model"), "the student labels for the next one"
    assert by_name["g00/train"].params["model"].name == cfg.model.name
    assert by_name["g01/train"].params["model"].model_dump() == {
        "name": cfg.student.name,
        "dropout": cfg.student.dropout,
        "stochastic_depth": cfg.student.stochastic_depth,
    }


def test_student_smaller_than_the_teacher_is_rejected_when_required() -> None:
    message = problems(noisy_student.NoisyStudentConfig, **{"model.name": "resnet18", "student.name": "small_cnn"})
    assert "1 problem" in message
    assert "student.name" in message and "student.require_larger=false" in message and "'resnet18'" in message
    allowed = config(
        noisy_student.NoisyStudentConfig,
        **{"model.name": "resnet18", "student.name": "small_cnn", "student.require_larger": False},
    )
    assert allowed.student.name == "small_cnn"
    assert (
        config(noisy_student.NoisyStudentConfig, **{"model.name": "small_cnn", "student.name": "resnet34"}).student.name
        == "resnet34"
    )


@pytest.mark.parametrize(
    ("model_cls", "key"),
    [(noisy_student.NoisyStudentConfig, "noisy.temperature"), (distill.DistillConfig, "distill.temperature")],
)
@pytest.mark.parametrize("value", [0, -1.0])
def test_non_positive_temperature_names_the_key(model_cls: type, key: str, value: float) -> None:
    message = problems(model_cls, **{key: value})
    assert "1 problem" in message and key in message and "> 0" in message
