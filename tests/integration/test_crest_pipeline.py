"""smoke.yaml through the real `relay` CLI on a local Ray instance with a real SQLite MLflow store.

The rerun and the stop-then-resume run their stages in-process: what the cache and the run record skip or redo is
their point, not Ray (each Ray start cost about 8 s); the shared run stays on Ray.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.pseudo_label import pseudo_label_schema
from pipelines.stages import refs
from tests.integration.relay_cli import (
    ROOT,
    manifests,
    mlflow_client,
    output_path,
    own_name,
    pipeline_runs,
    relay,
    undeclared_metrics,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
IN_PROCESS = "run.executor=local"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    workspace = tmp_path_factory.mktemp("ws")
    # system metrics sampled every 0.2 s, not 2 s: a stage run gets samples even when it is short (lineage test)
    result = relay(
        "run", str(SMOKE), "tracking.system_metrics_interval_s=0.2", "--run-id", "smoke-1", workspace=workspace
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return workspace, result


def test_run_prints_the_generation_table_and_where_to_browse(smoke_run) -> None:
    _, result = smoke_run
    assert "balanced_accuracy" in result.stdout
    lines = [line for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert [line.split()[0] for line in lines] == ["0", "1"]
    assert "relay ui" in result.stdout


def test_mlflow_run_tree_tags_and_generation_metrics(smoke_run) -> None:
    workspace, _ = smoke_run
    runs = pipeline_runs(workspace, "smoke-1")
    by_name = {own_name(run): run for run in runs}
    parent = by_name["smoke-1"]
    assert {"gen-00", "gen-01"} <= set(by_name)
    for gen in ("gen-00", "gen-01"):
        assert by_name[gen].data.tags["mlflow.parentRunId"] == parent.info.run_id
    for stage in ("g00/train", "g00/evaluate", "g00/pseudo_label", "g00/rebalance", "g01/train", "g01/evaluate"):
        run = by_name[stage]
        gen_run = by_name[f"gen-{stage[1:3]}"]
        assert run.data.tags["mlflow.parentRunId"] == gen_run.info.run_id
        assert run.data.tags["relay.stage"] == stage
        assert run.data.tags["relay.generation"] == str(int(stage[1:3]))
        assert len(run.data.tags["relay.fingerprint"]) >= 16
        assert run.data.tags["cache_hit"] == "false"
    history = mlflow_client(workspace).get_metric_history(parent.info.run_id, "evaluate/balanced_accuracy")
    assert sorted(m.step for m in history) == [0, 1]
    assert all(0.0 <= m.value <= 1.0 for m in history)
    assert any(
        a.path.endswith(".png") for a in mlflow_client(workspace).list_artifacts(by_name["g00/evaluate"].info.run_id)
    )


def test_the_evaluate_stage_reports_exactly_what_its_body_declares(smoke_run) -> None:
    """`relay validate` checks tune.metric against the declaration: it must match what the stage logs."""
    workspace, _ = smoke_run
    by_name = {own_name(run): run for run in pipeline_runs(workspace, "smoke-1")}
    for stage in ("g00/evaluate", "g01/evaluate"):
        assert undeclared_metrics(by_name[stage], refs.evaluate_generation.reports) == (set(), set())


def test_a_registered_model_loads_and_predicts_through_mlflow_pyfunc(smoke_run, monkeypatch) -> None:
    """`mlflow.pyfunc.load_model("models:/smoke@gen-01")` predicts as the checkpoint does loaded by hand."""
    import mlflow
    import numpy as np
    import torch

    from pipelines.data import load_digits
    from pipelines.pseudo_label import predict_probs
    from pipelines.stages.common import load_model

    workspace, _ = smoke_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/smoke@gen-01")
    assert model.metadata.signature.inputs.inputs[0].type == np.dtype(np.uint8)
    images = load_digits().train.images[:200]  # uint8 [N, 1, 16, 16], the size smoke.yaml reads digits at
    probs = model.predict(images.numpy())
    assert probs.shape == (200, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    version = mlflow.MlflowClient().get_model_version_by_alias("smoke", "gen-01")
    local = Path(mlflow.artifacts.download_artifacts(version.source))
    by_hand = load_model(torch.load(local / "checkpoint.pt", weights_only=True), "cpu")
    assert np.allclose(probs, predict_probs(by_hand, images, 64, "cpu"), atol=1e-6)


def test_every_mlflow_run_is_closed_when_the_cli_exits(smoke_run) -> None:
    """The CLI ends its process without interpreter teardown and stops Ray while MLflow drains:
    the parent's end (status, summary files) is the last queued write, so it must be there."""
    workspace, _ = smoke_run
    runs = pipeline_runs(workspace, "smoke-1")
    assert len(runs) == 1 + 2 + 7  # parent, gen-00/01, split + 4 stages of g00 + 2 of g01
    assert {run.info.status for run in runs} == {"FINISHED"}
    parent = next(run for run in runs if run.info.run_name == "smoke-1")
    assert parent.data.tags["relay.status"] == "FINISHED"
    assert "generations.csv" in {a.path for a in mlflow_client(workspace).list_artifacts(parent.info.run_id)}


def test_pseudo_label_table_schema_and_row_counts(smoke_run) -> None:
    workspace, _ = smoke_run
    found = manifests(workspace)
    split = pq.read_table(output_path(found["data/split"], "data/split"))
    unlabeled = sum(1 for s in split.column("subset").to_pylist() if s == "unlabeled")
    table = pq.read_table(output_path(found["g00/pseudo_label"], "g00/pseudo_labels"))
    assert table.schema.equals(pseudo_label_schema(10))
    probs = table.schema.field("probs").type
    assert pa.types.is_fixed_size_list(probs) and probs.list_size == 10 and probs.value_type == pa.float32()
    assert [f.name for f in table.schema] == ["sample_id", "pred_class", "confidence", "probs", "generation", "model"]
    assert table.schema.field("sample_id").type == pa.int64()
    assert table.schema.field("pred_class").type == pa.int32()
    assert table.num_rows == unlabeled
    assert set(table.column("generation").to_pylist()) == {0}
    picks = pq.read_table(output_path(found["g00/rebalance"], "g00/picks"))
    assert 0 < picks.num_rows <= unlabeled
    assert found["g00/rebalance"]["metrics"]["kept_total"] == picks.num_rows
    assert "g01/pseudo_label" not in found  # the last generation only trains and evaluates


def test_rerun_skips_every_stage_visibly(smoke_run) -> None:
    workspace, _ = smoke_run
    result = relay("run", str(SMOKE), IN_PROCESS, "--run-id", "smoke-2", workspace=workspace)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("cache hit") == 7  # split + 4 stages of g00 + 2 of g01
    stage_runs = [r for r in pipeline_runs(workspace, "smoke-2") if "/" in (r.info.run_name or "")]
    assert len(stage_runs) == 7
    assert all(r.data.tags["cache_hit"] == "true" for r in stage_runs)


def test_stop_then_resume_redoes_only_the_missing_stages(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    first = relay(
        "run",
        str(SMOKE),
        "--run-id",
        "stopped",
        "--stop-after",
        "g00/pseudo_label",
        "train.steps=30",
        IN_PROCESS,
        workspace=workspace,
    )
    assert first.returncode == 0, first.stderr[-4000:]
    assert "relay resume stopped" in first.stdout
    done_before = set(manifests(workspace))
    assert {"data/split", "g00/train", "g00/pseudo_label"} <= done_before
    assert "g01/train" not in done_before
    second = relay("resume", "stopped", workspace=workspace)
    assert second.returncode == 0, second.stderr[-4000:]
    for stage in ("data/split", "g00/train", "g00/pseudo_label"):
        assert f"skip {stage}" in second.stderr or f"{stage}: cache hit" in second.stderr
    assert {"g00/rebalance", "g01/train", "g01/evaluate"} <= set(manifests(workspace))
    names = [own_name(r) for r in pipeline_runs(workspace, "stopped")]
    assert names.count("stopped") == 1 and names.count("gen-00") == 1, "resume reuses the parent and generation runs"


def test_lineage_registry_summary_and_provenance(smoke_run, tmp_path: Path) -> None:
    """g01/train reads g00/picks as a dataset (Relay's digest) and g00's model as its teacher; models registered."""
    workspace, _ = smoke_run
    mlflow = mlflow_client(workspace)
    by_name = {own_name(run): mlflow.get_run(run.info.run_id) for run in pipeline_runs(workspace, "smoke-1")}
    picks_digest = manifests(workspace)["g00/rebalance"]["outputs"]["g00/picks"]["digest"]
    train1 = by_name["g01/train"]
    datasets = {d.dataset.name: d.dataset for d in train1.inputs.dataset_inputs}
    assert datasets["g00/picks"].digest == picks_digest[:32]
    assert '"sample_id"' in datasets["g00/picks"].schema and datasets["g00/picks"].source.endswith('.parquet"}')
    teacher = mlflow.get_logged_model(train1.inputs.model_inputs[0].model_id)
    assert teacher.tags["relay.artifact"] == "g00/model"
    assert train1.data.tags["relay.teacher"] == f"models:/{teacher.model_id}"
    model_dir = Path(teacher.artifact_location.removeprefix("file://"))
    assert {"checkpoint.pt", "config.yaml"} <= {p.name for p in model_dir.iterdir()}
    assert "small_cnn" in (model_dir / "config.yaml").read_text()
    registered = mlflow.get_registered_model("smoke")
    assert {"gen-00", "gen-01", "newest"} <= set(registered.aliases)
    assert registered.aliases["newest"] == registered.aliases["gen-01"]

    parent = by_name["smoke-1"]
    assert {"config.yaml", "generations.csv", "generations.html"} <= {
        a.path for a in mlflow.list_artifacts(parent.info.run_id)
    }
    rows = (
        Path(mlflow.download_artifacts(parent.info.run_id, "generations.csv", str(tmp_path))).read_text().splitlines()
    )
    assert [line.split(",")[0] for line in rows[1:]] == ["0", "1"]
    assert "seed: 0" in Path(mlflow.download_artifacts(parent.info.run_id, "config.yaml", str(tmp_path))).read_text()
    tags = parent.data.tags
    assert tags["relay.git_commit"] == "unknown" or len(tags["relay.git_commit"]) == 40
    assert all(tags[f"relay.version.{name}"] for name in ("torch", "torchvision", "ray", "mlflow", "pyarrow", "relay"))

    gen0 = {a.path for d in ("evaluate", "rebalance") for a in mlflow.list_artifacts(by_name["gen-00"].info.run_id, d)}
    assert {
        "evaluate/per_class.png",
        "evaluate/confusion.png",
        "evaluate/classes.json",
        "rebalance/pseudo_label_histogram.png",
        "rebalance/picks.csv",
    } <= gen0
    assert any(key.startswith("system/") for key in by_name["g00/train"].data.metrics), (
        f"no system metrics in g00/train (sampled every 0.2 s): {sorted(by_name['g00/train'].data.metrics)}"
    )
