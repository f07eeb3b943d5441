"""Reading what a cluster run left in the S3 store and in the MLflow server, for the cluster tier's tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import requests

from orchestrator.engine.digests import ALGORITHM, LEGACY, digest_of
from tests.cluster.conftest import Stack


def _bucket_path(store: str) -> str:
    return store.removeprefix("s3://").rstrip("/")


def read_json(stack: Stack, store: str, relative: str) -> dict[str, Any] | None:
    """The JSON file at ``relative``, or None when it is missing or read torn (a rewrite raced the read)."""
    try:
        with stack.fs().open_input_stream(f"{_bucket_path(store)}/{relative}") as stream:
            return json.loads(stream.read())
    except (FileNotFoundError, OSError, ValueError):
        return None


def manifests(stack: Stack, store: str) -> dict[str, dict[str, Any]]:
    """Stage name -> manifest of every completed stage in the store."""
    selector = pafs.FileSelector(f"{_bucket_path(store)}/stages", allow_not_found=True, recursive=True)
    found = {}
    for info in stack.fs().get_file_info(selector):
        if info.base_name == "manifest.json":
            with stack.fs().open_input_stream(info.path) as stream:
                manifest = json.loads(stream.read())
            found[manifest["stage"]] = manifest
    return found


def ledger(stack: Stack, store: str, run_id: str) -> dict[str, Any] | None:
    """The run's ledger, beside the artifacts (runs/RUN_ID/ledger.json)."""
    return read_json(stack, store, f"runs/{run_id}/ledger.json")


def stage_state(stack: Stack, store: str, run_id: str, stage: str) -> dict[str, Any]:
    entry = ((ledger(stack, store, run_id) or {}).get("stages") or {}).get(stage)
    return entry or {}


def store_keys(stack: Stack, store: str) -> list[str]:
    selector = pafs.FileSelector(_bucket_path(store), allow_not_found=True, recursive=True)
    return [info.path for info in stack.fs().get_file_info(selector) if info.type == pafs.FileType.File]


def output_digests(manifests_by_stage: dict[str, dict[str, Any]]) -> dict[tuple[int, str], str]:
    """(size, digest) -> artifact name of every stored output of the run: what a local copy would match."""
    return {
        (ref["size"], ref["digest"]): name
        for manifest in manifests_by_stage.values()
        for name, ref in manifest["outputs"].items()
    }


def local_copies(roots: list[Path], digests: dict[tuple[int, str], str]) -> list[str]:
    """Files under ``roots`` whose size and digest (xxh3 or sha256) equal a stored output's: an output on a local path."""
    sizes = {size for size, _ in digests}
    found = []
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                try:
                    if path.is_symlink() or path.stat().st_size not in sizes:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                for algorithm in (ALGORITHM, LEGACY):
                    match = digests.get((len(data), digest_of(data, algorithm)))
                    if match:
                        found.append(f"{path} ({match})")
    return found


def mlflow_runs(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    """Every MLflow run of one pipeline run, through the server's REST API (what the UI reads)."""
    experiment = requests.get(
        f"{stack.mlflow.url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "relay"}, timeout=30
    ).json()["experiment"]["experiment_id"]
    body = {
        "experiment_ids": [experiment],
        "filter": f"tags.`relay.pipeline_run` = '{run_id}'",
        "max_results": 500,
    }
    response = requests.post(f"{stack.mlflow.url}/api/2.0/mlflow/runs/search", json=body, timeout=30)
    return response.json().get("runs", [])


def run_name(run: dict[str, Any]) -> str:
    """A run's own name, without the ` of RUN_ID` a generation's and a stage's end with (`gen-01 of smoke-1`)."""
    tags = {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}
    return run["info"]["run_name"].removesuffix(f" of {tags.get('relay.pipeline_run')}")
