"""The Python API (orchestrator.cli.api) on one real tiny smoke.yaml run: local Ray, SQLite MLflow, a tmp workspace.

What it returns is checked against what the CLI prints and what the run logged: the run id and
generations `relay generations` shows, the CLI's message for a run id taken (and nothing written),
the pseudo-label table's rows the labeling stage counted, the model's balanced accuracy the
evaluate stage measured. Bad input that needs no run: tests/unit/orchestrator/cli/test_api_bad_input.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch
import yaml
from sklearn.metrics import balanced_accuracy_score

from orchestrator.cli import api, main
from orchestrator.cli.run.run_record import read_run_record
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.errors import InputError
from orchestrator.registry import load_pipelines
from pipelines.pseudo_label import predict_probs, pseudo_label_schema
from pipelines.stages.common import subset_images
from tests.integration.relay_cli import ROOT, pipeline_runs, relay
from tests.integration.test_store_failures import Moto, moto  # noqa: F401  (moto: the S3 server fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
TINY = ["train.steps=20", "tracking.system_metrics=false"]  # two generations in well under a minute


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> api.RunResult:
    return api.run(SMOKE, TINY, workspace=tmp_path_factory.mktemp("ws"))


def written(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time: what a refused call must leave as it was."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def cli_message(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """What `relay` prints for bad input (exit 2), without its `relay: ` prefix."""
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err.strip().removeprefix("relay: ")


def test_run_returns_the_run_and_generations_relay_generations_prints(smoke: api.RunResult) -> None:
    shown = relay("generations", smoke.run_id, workspace=smoke.workspace)
    assert shown.returncode == 0, shown.stderr[-4000:]
    assert f"Run {smoke.run_id}: per-generation results" in shown.stdout
    lines = [line.split() for line in shown.stdout.splitlines() if line[:1].isdigit()]
    assert [int(line[0]) for line in lines] == [row["generation"] for row in smoke.generations] == [0, 1]
    assert [line[1] for line in lines] == [f"{row['evaluate/balanced_accuracy']:.4f}" for row in smoke.generations]
    assert smoke.status == "FINISHED"
    parent = next(run for run in pipeline_runs(smoke.workspace, smoke.run_id) if run.info.run_name == smoke.run_id)
    assert smoke.mlflow_run_id == parent.info.run_id
    assert smoke.tracking_uri == f"sqlite:///{smoke.workspace / 'mlflow.db'}"
    from_mlflow = api.generations(smoke.run_id, smoke.workspace)
    assert [{k: pytest.approx(row[k]) for k in row} for row in smoke.generations] == [
        {k: row[k] for k in mine} for row, mine in zip(from_mlflow, smoke.generations)
    ]
    listed = {row["run_id"]: row for row in api.runs(smoke.workspace)}
    assert (listed[smoke.run_id]["status"], listed[smoke.run_id]["generations"]) == ("FINISHED", "2/2")
    assert type(smoke.status) is str and type(listed[smoke.run_id]["status"]) is str  # plain words, not an enum
    assert "FINISHED" in yaml.safe_dump([listed[smoke.run_id], smoke.status])


def test_a_taken_run_id_is_refused_as_the_cli_refuses_it_and_the_workspace_is_untouched(
    smoke: api.RunResult, capsys
) -> None:
    before = written(smoke.workspace)
    with pytest.raises(InputError) as refused:
        api.run(SMOKE, TINY, workspace=smoke.workspace, run_id=smoke.run_id)
    argv = ["run", str(SMOKE), *TINY, f'run.workspace="{smoke.workspace}"', "--run-id", smoke.run_id]
    assert str(refused.value) == cli_message(argv, capsys)
    assert "already exists" in str(refused.value)
    assert written(smoke.workspace) == before


def test_pseudo_labels_have_the_documented_schema_and_the_rows_the_run_counted(smoke: api.RunResult) -> None:
    table = api.pseudo_labels(smoke.run_id, 0, smoke.workspace)
    assert table.schema.equals(pseudo_label_schema(10))
    assert [f.name for f in table.schema] == ["sample_id", "pred_class", "confidence", "probs", "generation", "model"]
    labeled = smoke.generations[0]
    assert table.num_rows == labeled["pseudo_label/rows"] > 0
    assert float(np.mean(table.column("confidence").to_numpy())) == pytest.approx(
        labeled["pseudo_label/mean_confidence"]
    )
    assert set(table.column("generation").to_pylist()) == {0}
    with pytest.raises(InputError, match="no pseudo-labels of generation 1; generations with pseudo-labels: 0"):
        api.pseudo_labels(smoke.run_id, 1, smoke.workspace)


def test_the_model_scores_the_balanced_accuracy_its_evaluation_logged(smoke: api.RunResult) -> None:
    network = api.model(smoke.run_id, 1, smoke.workspace)
    assert isinstance(network, torch.nn.Module) and not network.training
    assert {p.device.type for p in network.parameters()} == {"cpu"}
    _, config = read_run_record(ArtifactStore(smoke.artifact_uri), smoke.run_id, load_pipelines())
    _, images, labels = subset_images(config.data, api.artifact(smoke.run_id, "data/split", smoke.workspace), "test")
    predicted = predict_probs(network, images, 64, "cpu").argmax(axis=1)
    logged = smoke.generations[1]["evaluate/balanced_accuracy"]
    assert balanced_accuracy_score(labels.numpy(), predicted) == pytest.approx(logged, abs=1e-9)
    with pytest.raises(InputError, match="no models of generation 2; generations with a model: 0, 1"):
        api.model(smoke.run_id, 2, smoke.workspace)


def test_predict_gives_the_probabilities_mlflow_pyfunc_gives_and_refuses_another_size(
    smoke: api.RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uint8 images in, the registered gen-01 model's pyfunc probabilities out; the network's own input contract."""
    import mlflow

    from pipelines.data import load_digits
    from pipelines.models import to_float

    images = load_digits().train.images[:64]  # uint8 [N, 1, 16, 16], the size smoke.yaml reads digits at
    assert api.input_shape(smoke.run_id, smoke.workspace) == (1, 16, 16)
    probs = api.predict(smoke.run_id, 1, images, smoke.workspace)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", smoke.tracking_uri)
    registered = mlflow.pyfunc.load_model("models:/smoke@gen-01")
    from_mlflow = registered.predict(images.numpy())
    assert probs.shape == (64, 10) and np.allclose(probs, from_mlflow, atol=1e-6)
    assert np.array_equal(api.predict(smoke.run_id, 1, images[:, 0].numpy(), smoke.workspace), probs)
    network = api.model(smoke.run_id, 1, smoke.workspace)  # the documented input: to_float, NCHW, 16x16
    raw = registered.get_raw_model()  # MLflow's public way to the network, which api.model uses too
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), raw.state_dict().values()))
    with torch.inference_mode():
        by_hand = torch.softmax(network(to_float(images)), dim=1).numpy()
    assert np.allclose(by_hand, probs, atol=1e-6)
    with pytest.raises(InputError) as refused:
        api.predict(smoke.run_id, 1, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), smoke.workspace)
    assert str(refused.value).startswith(f"images: run {smoke.run_id} trained on uint8 images [N, 1, 16, 16]")
    assert "got [2, 1, 28, 28]; resize them to 16x16" in str(refused.value)
    with pytest.raises(InputError, match=r"got dtype float32; pass the pixels as read, not scaled"):
        api.predict(smoke.run_id, 1, images.float() / 255, smoke.workspace)
    with pytest.raises(InputError, match=r"images: no images \(got an empty batch \[0, 1, 16, 16\]\)"):
        api.predict(smoke.run_id, 1, np.zeros((0, 1, 16, 16), np.uint8), smoke.workspace)


def test_outputs_are_read_from_an_s3_store_as_from_a_folder(smoke: api.RunResult, moto: Moto) -> None:  # noqa: F811
    """The run's whole store copied into a bucket (manifests name their files relative to the store's root)."""
    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{moto.port}", scheme="http")
    pafs.copy_files(smoke.artifact_uri, "bucket/relay", destination_filesystem=fs)
    store = moto.uri("bucket/relay")
    from_s3 = api.pseudo_labels(smoke.run_id, 0, artifact_uri=store)
    assert from_s3.equals(api.pseudo_labels(smoke.run_id, 0, smoke.workspace))
    network, local = api.model(smoke.run_id, 1, artifact_uri=store), api.model(smoke.run_id, 1, smoke.workspace)
    assert all(torch.equal(a, b) for a, b in zip(network.state_dict().values(), local.state_dict().values()))
    assert [row["run_id"] for row in api.runs(artifact_uri=store)] == [smoke.run_id]


def test_a_run_stopped_early_has_no_later_outputs_until_resume_finishes_it(smoke: api.RunResult) -> None:
    """Same config and workspace as the shared run: every stage is a cache hit. Its stages run in-process (the resume
    keeps the run's settings): what stop and resume return is the point, not Ray (each Ray start cost about 8 s)."""
    stopped = api.run(SMOKE, [*TINY, "run.executor=local"], workspace=smoke.workspace, stop_after="g00/pseudo_label")
    assert stopped.status == "STOPPED" and stopped.run_id != smoke.run_id
    assert [row["generation"] for row in stopped.generations] == [0]
    assert api.pseudo_labels(stopped.run_id, 0, smoke.workspace).num_rows == smoke.generations[0]["pseudo_label/rows"]
    with pytest.raises(InputError, match=r"g01/model of run .* is not in .*: its stage g01/train has not finished"):
        api.model(stopped.run_id, 1, smoke.workspace)
    finished = api.resume(stopped.run_id, smoke.workspace)
    assert (finished.run_id, finished.status) == (stopped.run_id, "FINISHED")
    assert finished.mlflow_run_id == stopped.mlflow_run_id is not None
    assert finished.generations == smoke.generations
    assert isinstance(api.model(stopped.run_id, 1, smoke.workspace), torch.nn.Module)


def test_the_readers_read_a_tune_trial_from_its_ledger_and_its_sweeps_config(
    smoke: api.RunResult, tmp_path: Path
) -> None:
    """A trial keeps only runs/RUN_ID/ledger.json (no config.yaml) and runs the config its sweep saved in
    WORKSPACE/tune/SWEEP/sweep-config.yaml, with its sampled values from the sweep's trials.json. Here the shared
    run's store, copied, holds a trial's record: its ledger alone, and the sweep's folder beside it."""
    workspace = tmp_path / "ws"
    shutil.copytree(smoke.artifact_uri, workspace / "artifacts")
    trial, stranded = "smoke-sweep-abcde_00000", "gone-sweep-abcde_00000"
    for run_id in (trial, stranded):
        (workspace / "artifacts" / "runs" / run_id).mkdir()
        shutil.copy(
            Path(smoke.artifact_uri) / "runs" / smoke.run_id / "ledger.json", workspace / "artifacts" / "runs" / run_id
        )
    _, config = read_run_record(ArtifactStore(smoke.artifact_uri), smoke.run_id, load_pipelines())
    sweep = {
        **config.model_dump(mode="json"),
        "tune": {"metric": "evaluate/balanced_accuracy", "space": {"crest.t_min": {"uniform": [0.3, 0.9]}}},
    }
    (workspace / "tune" / "smoke-sweep").mkdir(parents=True)
    (workspace / "tune" / "smoke-sweep" / "sweep-config.yaml").write_text(yaml.safe_dump(sweep))
    (workspace / "tune" / "smoke-sweep" / "trials.json").write_text(json.dumps([{"run_id": trial, "crest.t_min": 0.5}]))

    assert api.pseudo_labels(trial, 0, workspace).equals(api.pseudo_labels(smoke.run_id, 0, smoke.workspace))
    assert api.artifact(trial, "data/split", workspace).equals(
        api.artifact(smoke.run_id, "data/split", smoke.workspace)
    )
    assert api.input_shape(trial, workspace) == (1, 16, 16)
    images = np.random.default_rng(0).integers(0, 256, (4, 1, 16, 16), dtype=np.uint8)
    assert np.array_equal(
        api.predict(trial, 1, images, workspace), api.predict(smoke.run_id, 1, images, smoke.workspace)
    )
    with pytest.raises(
        InputError,
        match=r"run gone-sweep-abcde_00000 is a trial of a sweep \(relay tune\): a trial keeps only its ledger",
    ) as refused:
        api.input_shape(stranded, workspace)
    assert str(workspace / "tune" / "gone-sweep" / "sweep-config.yaml") in str(refused.value)


QUIET_CALLER = """
import logging, sys
import relay
logging.basicConfig(level=logging.INFO)
root = logging.getLogger()
before = (root.level, list(root.handlers))
relay.run(sys.argv[1], ["train.steps=20"], workspace=sys.argv[2])
print("caller's logging kept:", (root.level, list(root.handlers)) == before)
"""


def test_a_run_from_python_hides_mlflows_info_lines_as_the_cli_does_and_keeps_the_callers_logging(
    tmp_path: Path,
) -> None:
    """A notebook's process (fresh, with INFO logging of its own): MLflow's table creation and its system-metrics
    monitor's start/stop lines stay hidden as under `relay run`, while the caller's own INFO logging still shows."""
    done = subprocess.run(
        [sys.executable, "-c", QUIET_CALLER, str(SMOKE), str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # (check=True showed neither: one failure went unread)
    assert "caller's logging kept: True" in done.stdout
    assert "INFO:orchestrator" in done.stderr  # the caller's root handler still shows Relay's lines
    assert "mlflow.store.db.utils" not in done.stderr
    assert "mlflow.system_metrics" not in done.stderr
