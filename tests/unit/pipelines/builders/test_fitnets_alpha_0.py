"""FitNets' KD stage with `fitnets.alpha` 0: CE alone, so it reads neither the temperature nor the teacher."""

from __future__ import annotations

from pipelines.builders import fitnets
from tests.unit.pipelines.builders.test_distill import stage_of
from tests.unit.pipelines.builders.test_unread_keys import rerun
from tests.unit.pipelines.helpers import config


def test_with_alpha_0_the_kd_students_read_no_temperature_and_no_teacher() -> None:
    """Before: a new `fitnets.temperature` at alpha 0 retrained the KD students to the same weights, and every
    step ran the teacher for logits weighed by 0. At alpha 0.9 the temperature reruns both KD students."""
    assert rerun(fitnets, "fitnets_digits.yaml", {"fitnets.alpha": 0.0}, {"fitnets.temperature": 2.0}) == set()
    read = rerun(fitnets, "fitnets_digits.yaml", {"fitnets.alpha": 0.9}, {"fitnets.temperature": 2.0})
    assert {"g01/train", "g01/evaluate"} <= read and "g00/train" not in read and "g01/hint" not in read
    pipeline = fitnets.build(config(fitnets.FitNetsConfig, **{"fitnets.alpha": 0.0}))
    student = stage_of(pipeline, "g01/train")
    assert "g00/model" not in student.inputs and "teacher" not in student.params["io"]
    assert student.params["distill"].model_dump() == {"temperature": 4.0, "alpha": 0.0}
    taught = stage_of(fitnets.build(config(fitnets.FitNetsConfig, **{"fitnets.alpha": 0.5})), "g01/train")
    assert taught.params["io"]["teacher"] == "g00/model"
