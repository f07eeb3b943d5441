"""Running the real `relay` CLI in a fresh process and reading what it left, shared by the integration tests."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[2]


def artifacts_folder(kind: str) -> Path:
    """A folder that keeps what a test shows a person (screenshots, a terminal's text) after the run.

    ``test-artifacts/KIND/`` at the repository root (git ignores it), or under ``RELAY_TEST_ARTIFACTS``.
    """
    folder = Path(os.environ.get("RELAY_TEST_ARTIFACTS", ROOT / "test-artifacts")) / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def relay_env(workspace: Path) -> dict[str, str]:
    return {**os.environ, "RELAY_WORKSPACE": str(workspace), "PYTHONUNBUFFERED": "1"}


def relay(*args: str, workspace: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """Run the real CLI in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        env=relay_env(workspace),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def manifests(workspace: Path, fingerprints: set[str] | None = None) -> dict[str, dict]:
    """Stage name -> manifest of every completed stage in the artifact store (with `_dir`, its folder).

    ``fingerprints`` keeps only those stages: a workspace with several runs holds stages of the
    same name, and by name alone whichever manifest was read last would win.
    """
    found = {}
    for path in (workspace / "artifacts").rglob("manifest.json"):
        manifest = json.loads(path.read_text())
        if fingerprints is None or manifest["fingerprint"] in fingerprints:
            found[manifest["stage"]] = manifest | {"_dir": str(path.parent)}
    return found


def output_path(manifest: dict, name: str) -> Path:
    path = Path(manifest["outputs"][name]["path"])
    return path if path.is_absolute() else Path(manifest["_dir"]) / path.name


def mlflow_client(workspace: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")


def pipeline_runs(workspace: Path, run_id: str) -> list:
    """Every MLflow run (pipeline, generations, stages) of one pipeline run."""
    client = mlflow_client(workspace)
    experiment = client.get_experiment_by_name("relay")
    return client.search_runs([experiment.experiment_id], f"tags.`relay.pipeline_run` = '{run_id}'", max_results=500)


def own_name(run) -> str:
    """A run's name without the ` of RUN_ID` that a generation's and a stage's end with (`gen-01 of smoke-1`):
    `gen-01`, `g01/train`, and a pipeline run's own name, its run id."""
    return run.info.run_name.removesuffix(f" of {run.data.tags.get('relay.pipeline_run')}")


def runs_by_name(workspace: Path, run_id: str) -> dict:
    """Every MLflow run of one pipeline run, by its own name (the run id, `gen-NN`, stage names: ``own_name``)."""
    return {own_name(run): run for run in pipeline_runs(workspace, run_id)}


def metric(run, name: str) -> float:
    """A metric by name, whether the tracker logs it bare or under its stage's prefix (`evaluate/slim_params`)."""
    found = [value for key, value in run.data.metrics.items() if key == name or key.endswith("/" + name)]
    assert found, f"{name} not among {sorted(run.data.metrics)}"
    return found[0]


def undeclared_metrics(run, declared: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """(metrics a stage run logged that its body's `reports` does not declare, declared names it never logged).

    Relay's own bookkeeping (`duration_s`, MLflow's `system/*`) is not the body's report.
    """
    logged = {key for key in run.data.metrics if key != "duration_s" and not key.startswith("system/")}
    extra = {key for key in logged if not any(fnmatch.fnmatchcase(key, pattern) for pattern in declared)}
    missing = {p for p in declared if "*" not in p and p not in logged}
    return extra, missing


def smoke_sweep(folder: Path, name: str, learning_rates: list[float]) -> Path:
    """The smoke pipeline's file with a `tune:` section: one trial per learning rate, ranked on balanced accuracy."""
    import yaml

    from orchestrator.config import load_yaml

    data = load_yaml(ROOT / "pipelines" / "configs" / "smoke.yaml")
    data["tune"] = {
        "name": name,
        "metric": "evaluate/balanced_accuracy",
        "mode": "max",
        "num_samples": 1,
        "space": {"train.lr": {"grid": learning_rates}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
