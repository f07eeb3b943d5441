"""Noisy Student's builder: teacher, pseudo-labels, filter and students in the DAG; the config checks."""

from __future__ import annotations

import pytest

from orchestrator.engine.fingerprint import fingerprint
from pipelines.builders import distill, noisy_student
from pipelines.model_names import MODEL_NAMES, PROBE_CLASSES
from pipelines.models import create_model, parameter_count
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


def _fingerprints(**overrides: object) -> dict[str, str]:
    """Every stage's cache key (no inputs: those are the same artifacts in both runs) under ``overrides``."""
    cfg = config(noisy_student.NoisyStudentConfig, **{"noisy.iterations": 2, **overrides})
    return {stage.name: fingerprint(stage, {}, "code") for stage in noisy_student.build(cfg).stages}


@pytest.mark.parametrize(
    "override",
    [{"noisy.min_confidence": 0.5}, {"noisy.per_class": 7}, {"noisy.iterations": 1}],
)
def test_filter_settings_leave_the_train_stages_cached(override: dict[str, object]) -> None:
    """Before, every train stage carried all of `noisy`: a filter-only change retrained identical weights."""
    base, changed = _fingerprints(), _fingerprints(**override)
    for name in ("g00/train", "g01/train"):
        assert changed[name] == base[name], f"{name} would rerun for {override}"


def test_the_train_stages_rerun_when_what_they_read_changes() -> None:
    """`noisy.label_smoothing` smooths hard pseudo-labels: it reruns hard-label students, no soft-label one."""
    base = _fingerprints(**{"noisy.label_type": "hard"})
    smoothing = _fingerprints(**{"noisy.label_type": "hard", "noisy.label_smoothing": 0.2})
    assert smoothing["g00/train"] == base["g00/train"], "the teacher reads no pseudo-labels"
    assert smoothing["g01/train"] != base["g01/train"] and smoothing["g02/train"] != base["g02/train"]
    assert _fingerprints(**{"noisy.label_smoothing": 0.2}) == _fingerprints(), "soft labels are not smoothed"
    assert _fingerprints(**{"train.steps": 7})["g00/train"] != base["g00/train"]
    assert _fingerprints(**{"model.dropout": 0.2})["g00/train"] != base["g00/train"]


def test_the_temperature_reruns_only_what_reads_it() -> None:
    """Soft labels are softmax(z / T): T reruns the labeling. Hard labels never read T.

    The students' loss reads no T (their soft targets come tempered in the table), so their params
    carry none: they and the filters rerun through the table's digest (here empty), not a T of their own.
    """
    base = _fingerprints(**{"noisy.label_type": "soft"})
    tempered = _fingerprints(**{"noisy.label_type": "soft", "noisy.temperature": 2.5})
    changed = {name for name in base if tempered[name] != base[name]}
    assert changed == {"g00/pseudo_label", "g01/pseudo_label"}
    hard = _fingerprints(**{"noisy.label_type": "hard"})
    assert _fingerprints(**{"noisy.label_type": "hard", "noisy.temperature": 2.5}) == hard


@pytest.mark.parametrize(("channels", "classes"), [(1, PROBE_CLASSES), (3, PROBE_CLASSES), (1, 3), (3, 100)])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_size_counts_what_the_data_builds(name: str, channels: int, classes: int) -> None:
    """The config-time count (no torch) equals the built model's on images of that many channels and classes."""
    built = parameter_count(create_model(name, classes, channels))
    assert noisy_student.model_size(name, channels, classes) == built


def test_the_size_error_counts_the_classes_the_task_has() -> None:
    """Three classes of digits: the models are built with a 3-way classifier, and the message counts that."""
    message = problems(
        noisy_student.NoisyStudentConfig,
        **{"data.name": "digits", "data.classes": [0, 1, 2], "model.name": "resnet18", "student.name": "small_cnn"},
    )
    resnet18 = parameter_count(create_model("resnet18", 3, 1))
    small_cnn = parameter_count(create_model("small_cnn", 3, 1))
    assert f"{resnet18:,} parameters" in message and f"with {small_cnn:,}" in message


def test_the_size_error_quotes_the_counts_the_runs_log() -> None:
    """Digits are 1-channel: resnet18 has 11,172,810 parameters there (11,173,962 was the RGB count)."""
    message = problems(
        noisy_student.NoisyStudentConfig,
        **{"data.name": "digits", "model.name": "resnet18", "student.name": "small_cnn"},
    )
    assert "11,172,810 parameters" in message and "with 94,186" in message
    message = problems(
        noisy_student.NoisyStudentConfig,
        **{"data.name": "cifar10", "data.root": "/nowhere", "model.name": "resnet18", "student.name": "small_cnn"},
    )
    assert "11,173,962 parameters" in message and "with 94,762" in message
