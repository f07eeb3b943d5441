"""KE, Noisy Student and distillation through the real `relay` CLI: local Ray, a real SQLite MLflow store, real files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pipelines.stages import refs
from tests.integration.relay_cli import ROOT, manifests, metric, output_path, relay, runs_by_name, undeclared_metrics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CONFIGS = ROOT / "pipelines" / "configs"


def run_pipeline(tmp_path_factory: pytest.TempPathFactory, config: str, run_id: str, *overrides: str) -> Path:
    workspace = tmp_path_factory.mktemp(run_id)
    result = relay("run", str(CONFIGS / config), *overrides, "--run-id", run_id, workspace=workspace)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "balanced_accuracy" in result.stdout
    return workspace


@pytest.fixture(scope="module")
def ke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_pipeline(
        tmp_path_factory, "ke_digits.yaml", "ke-1", "ke.generations=3", "train.steps=40", "train.warmup_steps=4"
    )


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_pipeline(
        tmp_path_factory,
        "noisy_student_digits.yaml",
        "ns-1",
        "noisy.iterations=2",
        "train.steps=40",
        "train.warmup_steps=4",
    )


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_pipeline(tmp_path_factory, "distill_digits.yaml", "kd-1", "train.steps=20", "train.warmup_steps=2")


def test_ke_generation_runs_carry_dense_and_slim_metrics(ke_run: Path) -> None:
    by_name = runs_by_name(ke_run, "ke-1")
    parent = by_name["ke-1"]
    for k in range(3):
        gen = by_name[f"gen-{k:02d}"]
        assert gen.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert 0.0 <= metric(gen, "balanced_accuracy") <= 1.0
        assert 0.0 <= metric(gen, "slim_accuracy") <= 1.0
        assert 0 < metric(gen, "slim_params") < metric(gen, "dense_params")
    # KELS; the KE demo's classes are balanced, so there is no tail to measure (tail_recall is not logged)
    assert undeclared_metrics(by_name["g00/evaluate"], (*refs.evaluate_network.reports, *refs.SLIM_METRICS)) == (
        set(),
        {"tail_recall"},
    )
    assert 0.0 <= metric(by_name["gen-02"], "baseline_balanced_accuracy") <= 1.0
    assert by_name["baseline/train"].data.tags["mlflow.parentRunId"] == by_name["gen-02"].info.run_id
    assert metric(by_name["baseline/train"], "baseline_steps") == 3 * 40


def test_ke_masks_are_one_artifact_reused_by_every_generation(ke_run: Path) -> None:
    found = manifests(ke_run)
    assert [stage for stage, m in found.items() if "g00/masks" in m["outputs"]] == ["g00/split_masks"]
    state = torch.load(output_path(found["g00/split_masks"], "g00/masks"), weights_only=True)
    assert state["split_mode"] == "kels" and state["split_rate"] == 0.5
    assert all(mask.dtype == torch.uint8 for mask in state["masks"].values())
    g02 = torch.load(output_path(found["g02/train"], "g02/model"), weights_only=True)
    assert g02["model"] == "small_cnn" and set(state["masks"]) <= set(g02["state_dict"])


def test_noisy_student_teacher_then_two_students(noisy_run: Path) -> None:
    by_name = runs_by_name(noisy_run, "ns-1")
    assert {"gen-00", "gen-01", "gen-02", "g00/pseudo_label", "g00/filter", "g01/filter", "g02/evaluate"} <= set(
        by_name
    )
    assert "g02/pseudo_label" not in by_name, "the last student only trains and evaluates"
    for k in range(3):
        assert 0.0 <= metric(by_name[f"gen-{k:02d}"], "balanced_accuracy") <= 1.0
    found = manifests(noisy_run)
    labels = pq.read_table(output_path(found["g00/pseudo_label"], "g00/pseudo_labels"))
    picks = pq.read_table(output_path(found["g00/filter"], "g00/picks"))
    assert labels.column("confidence").to_numpy().min() >= 0.0
    assert picks.num_rows == metric(by_name["g00/filter"], "kept_total") > 0
    assert set(picks.column("sample_id").to_pylist()) <= set(labels.column("sample_id").to_pylist())
    assert metric(by_name["g01/train"], "pseudo_size") == picks.num_rows


def test_distill_evaluates_teacher_student_and_the_no_teacher_baseline(distill_run: Path) -> None:
    by_name = runs_by_name(distill_run, "kd-1")
    teacher, student = by_name["gen-00"], by_name["gen-01"]
    assert metric(teacher, "dense_params") > 10 * metric(student, "dense_params")
    assert 0.0 <= metric(student, "balanced_accuracy") <= 1.0
    assert 0.0 <= metric(student, "baseline_balanced_accuracy") <= 1.0
    assert set(manifests(distill_run)) == {
        "data/split",
        "g00/train",
        "g00/evaluate",
        "g01/train",
        "g01/evaluate",
        "baseline/train",
        "baseline/evaluate",
    }
