"""The distillation builder: teacher, student and the no-teacher baseline in the DAG."""

from __future__ import annotations

from orchestrator.dag import Pipeline, Stage
from pipelines.builders import distill
from tests.unit.pipelines.builders.test_unread_keys import rerun
from tests.unit.pipelines.helpers import config, problems


def test_distill_student_reads_the_teacher_and_the_baseline_does_not() -> None:
    pipeline = distill.build(config(distill.DistillConfig))
    by_name = {stage.name: stage for stage in pipeline.stages}
    assert list(by_name) == [
        "data/split",
        "g00/train",
        "g00/evaluate",
        "g01/train",
        "g01/evaluate",
        "baseline/train",
        "baseline/evaluate",
    ]
    assert by_name["g01/train"].params["io"]["teacher"] == "g00/model"
    assert by_name["g01/train"].params["distill"].model_dump() == {"temperature": 4.0, "alpha": 0.9}
    assert "g00/model" not in by_name["baseline/train"].inputs
    assert "distill" not in by_name["baseline/train"].params
    no_baseline = distill.build(config(distill.DistillConfig, **{"distill.student_baseline": False}))
    assert len(no_baseline.stages) == 5


def test_student_loop_bounds_are_checked_once_at_the_config_boundary() -> None:
    """StudentSettings checks nothing again: the `train` and `distill` sections reject the values, all reported together."""
    bad = {"train.steps": 10, "train.warmup_steps": 10, "distill.temperature": 0.0, "distill.alpha": 1.5}
    message = problems(distill.DistillConfig, **bad)
    assert "3 problem" in message
    assert "train.warmup_steps" in message and "distill.temperature" in message and "distill.alpha" in message


def test_with_alpha_0_the_student_reads_no_temperature_and_no_teacher() -> None:
    """alpha 0 weighs the KL term by 0: a new `distill.temperature` keeps the cached student, and no teacher is wired.

    With alpha 0.9 the temperature is read: a new one reruns the student (and its evaluation), not the teacher.
    """
    assert rerun(distill, "distill_digits.yaml", {"distill.alpha": 0.0}, {"distill.temperature": 2.0}) == set()
    read = rerun(distill, "distill_digits.yaml", {"distill.alpha": 0.9}, {"distill.temperature": 2.0})
    assert read == {"g01/train", "g01/evaluate"}
    student = stage_of(distill.build(config(distill.DistillConfig, **{"distill.alpha": 0.0})), "g01/train")
    assert "g00/model" not in student.inputs and "teacher" not in student.params["io"]
    assert student.params["distill"].model_dump() == {"temperature": 4.0, "alpha": 0.0}


def stage_of(pipeline: Pipeline, name: str) -> Stage:
    return next(stage for stage in pipeline.stages if stage.name == name)
