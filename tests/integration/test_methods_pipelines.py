"""Transfer, LwF, FitNets, pretext tasks and source selection through the real `relay` CLI: stages in-process, a real
SQLite MLflow store, real Parquet and checkpoints.

One small run per method (a few dozen steps). The transfer run's registered model is then the
`init.source` of the class-balanced run in the same workspace (`models:/NAME@ALIAS` through the
registry), so the MLflow layout and the reference resolution are checked end to end.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator.config import RunSettings, TrackingSettings
from orchestrator.sources import resolve_source
from tests.integration.relay_cli import (
    ROOT,
    manifests,
    metric,
    mlflow_client,
    output_path,
    pipeline_runs,
    relay,
    runs_by_name,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CONFIGS = ROOT / "pipelines" / "configs"
# In-process stages: the methods' stages, runs and registry are the point, not Ray (each Ray start cost about 8 s).
IN_PROCESS = "run.executor=local"


def run_pipeline(workspace: Path, config: str, run_id: str, *overrides: str) -> Path:
    result = relay("run", str(CONFIGS / config), *overrides, IN_PROCESS, "--run-id", run_id, workspace=workspace)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "balanced_accuracy" in result.stdout
    return workspace


def parent_of(run) -> str:
    return run.data.tags["mlflow.parentRunId"]


def stage_manifests(workspace: Path, run_id: str) -> dict:
    """The manifests of this run's stages, by the fingerprints its MLflow stage runs carry.

    Not by stage name: the transfer run and the run it starts both have a `g00/train`.
    """
    tags = [run.data.tags for run in pipeline_runs(workspace, run_id)]
    return manifests(workspace, {t["relay.fingerprint"] for t in tags if "relay.fingerprint" in t})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("methods")


@pytest.fixture(scope="module")
def transfer_run(workspace: Path) -> Path:
    overrides = (
        "train.steps=15",
        "transfer.pretrain_steps=15",
        "init.freeze_backbone_steps=5",
        "init.backbone_lr_scale=0.5",
    )
    return run_pipeline(workspace, "transfer_digits.yaml", "tl-1", *overrides)


def test_transfer_runs_nest_pretraining_and_fine_tuning_as_generations(transfer_run: Path) -> None:
    by_name = runs_by_name(transfer_run, "tl-1")
    parent = by_name["tl-1"].info.run_id
    assert parent_of(by_name["gen-00"]) == parent_of(by_name["gen-01"]) == parent
    assert parent_of(by_name["source/split"]) == parent_of(by_name["data/split"]) == parent
    assert parent_of(by_name["g00/train"]) == by_name["gen-00"].info.run_id
    for stage in ("g01/train", "g01/evaluate", "baseline/train", "baseline/evaluate"):
        assert parent_of(by_name[stage]) == by_name["gen-01"].info.run_id
    assert 0.0 <= metric(by_name["gen-01"], "balanced_accuracy") <= 1.0
    assert 0.0 <= metric(by_name["gen-01"], "baseline_balanced_accuracy") <= 1.0
    assert by_name["g01/train"].data.tags["relay.init_from"].startswith("models:/"), "the pretrained model is its input"
    per_class = {key for key in by_name["g01/evaluate"].data.metrics if key.startswith("recall/")}
    assert per_class == {f"recall/{digit}" for digit in range(5, 10)}  # the digits, not positions 0-4
    registered = mlflow_client(transfer_run).get_registered_model("transfer-digits")
    assert {"gen-00", "gen-01", "newest"} <= set(registered.aliases)


def test_a_registered_model_starts_another_pipeline_through_init_source(transfer_run: Path) -> None:
    """class_balanced_digits (KE's loop, focal loss) starting from `models:/transfer-digits@gen-00` (5 classes, head reset)."""
    run_pipeline(
        transfer_run,
        "class_balanced_digits.yaml",
        "cb-1",
        "train.steps=10",
        "train.warmup_steps=9",
        "init.source=models:/transfer-digits@gen-00",
    )
    by_name = runs_by_name(transfer_run, "cb-1")
    assert parent_of(by_name["init/import"]) == by_name["cb-1"].info.run_id
    registered = resolve_source(
        "models:/transfer-digits@gen-00", RunSettings(workspace=str(transfer_run)), TrackingSettings()
    )
    found = stage_manifests(transfer_run, "cb-1")
    imported = found["init/import"]
    assert metric(by_name["init/import"], "tensors") > 0
    source_manifest = stage_manifests(transfer_run, "tl-1")["g00/train"]
    source_bytes = output_path(source_manifest, "g00/model").read_bytes()
    assert hashlib.sha256(source_bytes).hexdigest() == registered.digest, "the registry points at the stored checkpoint"
    assert imported["outputs"]["init/model"]["digest"], "the import is stored like any output"
    assert 0.0 <= metric(by_name["gen-00"], "balanced_accuracy") <= 1.0
    assert metric(by_name["gen-00"], "tail_recall") >= 0.0


def test_lwf_reports_both_tasks_for_lwf_fine_tuning_and_joint_training(workspace: Path) -> None:
    run_pipeline(
        workspace, "lwf_digits.yaml", "lwf-1", "train.steps=15", "lwf.old_steps=15", "init.freeze_backbone_steps=3"
    )
    by_name = runs_by_name(workspace, "lwf-1")
    gen1 = by_name["gen-01"]
    for name in (
        "old_accuracy",
        "new_accuracy",
        "finetune_old_accuracy",
        "finetune_new_accuracy",
        "joint_old_accuracy",
    ):
        assert 0.0 <= metric(gen1, name) <= 1.0
    for name in ("old_recall/0", "old_precision/4", "new_recall/5", "new_precision/9", "finetune_old_recall/2"):
        assert 0.0 <= metric(gen1, name) <= 1.0  # class by class, by the digits' own ids
    plotted = {a.path for a in mlflow_client(workspace).list_artifacts(gen1.info.run_id, "evaluate")}
    assert {"evaluate/per_class_old.png", "evaluate/per_class_new.png"} <= plotted, plotted
    recorded = pq.read_table(output_path(stage_manifests(workspace, "lwf-1")["g01/record"], "g01/recorded"))
    assert recorded.num_rows == metric(by_name["g01/train"], "new_size") == 650
    assert recorded.schema.field("logits").type.list_size == 5
    (dataset,) = mlflow_client(workspace).get_run(by_name["g01/train"].info.run_id).inputs.dataset_inputs
    assert dataset.dataset.name == "g01/recorded", "the recorded outputs are the LwF stage's dataset"


def test_fitnets_trains_hints_then_kd_beside_kd_alone_and_no_teacher(workspace: Path) -> None:
    overrides = (
        "model.name=small_cnn",
        "fitnets.hint_layer=features.2",
        "train.steps=10",
        "train.warmup_steps=9",
        "train.lr=0.01",  # the summed hint loss of small_cnn's 64 x 8 x 8 map diverges at 0.05 in 10 steps
        "fitnets.hint_steps=10",
    )
    run_pipeline(workspace, "fitnets_digits.yaml", "fn-1", *overrides)
    by_name = runs_by_name(workspace, "fn-1")
    assert parent_of(by_name["g01/hint"]) == by_name["gen-01"].info.run_id
    assert metric(by_name["g01/hint"], "loss") >= 0.0
    for name in ("balanced_accuracy", "kd_balanced_accuracy", "baseline_balanced_accuracy"):
        assert 0.0 <= metric(by_name["gen-01"], name) <= 1.0


def test_a_pretext_stage_is_probed_and_starts_fixmatch(workspace: Path) -> None:
    overrides = ("pretext.steps=10", "pretext.batch_size=32", "train.steps=10", "crest.generations=1")
    run_pipeline(workspace, "pretext_crest_digits.yaml", "ssl-1", *overrides)
    by_name = runs_by_name(workspace, "ssl-1")
    parent = by_name["ssl-1"].info.run_id
    assert parent_of(by_name["pretext/pretrain"]) == parent_of(by_name["pretext/probe"]) == parent
    assert 0.0 < metric(by_name["pretext/probe"], "accuracy") <= 1.0
    assert metric(by_name["pretext/pretrain"], "loss") > 0.0
    assert by_name["g00/train"].data.tags["relay.init_from"].startswith("models:/"), "FixMatch started from SimCLR"


def test_source_selection_ranks_the_noisy_digits_first_and_fine_tunes(workspace: Path) -> None:
    run_pipeline(
        workspace,
        "domain_similarity_digits.yaml",
        "ds-1",
        "domain.pretrain_steps=10",
        "train.steps=10",
        "train.warmup_steps=9",
        "init.freeze_backbone_steps=5",  # below train.steps: a freeze as long as the training is refused
    )
    by_name = runs_by_name(workspace, "ds-1")
    ranking = pq.read_table(output_path(stage_manifests(workspace, "ds-1")["g00/similarity"], "g00/ranking"))
    assert ranking.column("source")[0].as_py() == "noisy-digits"
    assert metric(by_name["gen-00"], "noisy-digits") == pytest.approx(ranking.column("similarity")[0].as_py())
    assert 0.0 <= metric(by_name["gen-01"], "balanced_accuracy") <= 1.0
