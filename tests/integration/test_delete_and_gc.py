"""`relay delete` and `relay gc` on real runs: a real artifact store, a real SQLite MLflow store, the real CLI.

Why: a long-lived workspace had no way to free space. Stage folders are a cache shared between runs and named by
fingerprint only, a run folder removed by hand left its stage folders, and MLflow's own delete left `relay runs`
listing the run. Two runs that differ in `seed` share the data split and nothing else (the split does not read
the seed), which is the sharing these tests delete around.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import ViewType

from tests.integration.relay_cli import ROOT, mlflow_client, own_name, relay, relay_env, runs_by_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
SMALL = ("run.executor=local", "crest.generations=1", "train.steps=10")
SHARED = "data/split"
OWN = ("g00/train", "g00/evaluate")


def run_smoke(workspace: Path, run_id: str, seed: int) -> dict[str, str]:
    """A real small run; returns its stages' fingerprints, as its ledger names them."""
    result = relay("run", str(SMOKE), *SMALL, f"seed={seed}", "--run-id", run_id, workspace=workspace)
    assert result.returncode == 0, result.stderr[-4000:]
    return fingerprints(workspace, run_id)


def fingerprints(workspace: Path, run_id: str) -> dict[str, str]:
    ledger = json.loads((workspace / "artifacts" / "runs" / run_id / "ledger.json").read_text())
    return {name: entry["fingerprint"] for name, entry in ledger["stages"].items()}


def stage_folder(workspace: Path, fingerprint: str) -> Path:
    return workspace / "artifacts" / "stages" / fingerprint


def relay_off_a_terminal(*args: str, workspace: Path) -> subprocess.CompletedProcess:
    """The CLI with nothing on its standard input (a script, CI): there is no one to answer a question."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        env=relay_env(workspace),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def active_mlflow_runs(workspace: Path, run_id: str) -> list:
    client = mlflow_client(workspace)
    experiment = client.get_experiment_by_name("relay")
    query = f"tags.`relay.pipeline_run` = '{run_id}'"
    return client.search_runs([experiment.experiment_id], query, run_view_type=ViewType.ACTIVE_ONLY)


def deleted_mlflow_runs(workspace: Path, run_id: str) -> list:
    client = mlflow_client(workspace)
    experiment = client.get_experiment_by_name("relay")
    query = f"tags.`relay.pipeline_run` = '{run_id}'"
    return client.search_runs([experiment.experiment_id], query, run_view_type=ViewType.DELETED_ONLY)


def tree(workspace: Path) -> list[str]:
    """Every file of the artifact store, to show that a refused command removed nothing."""
    root = workspace / "artifacts"
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_delete_frees_only_what_no_other_run_uses_and_a_rerun_recomputes_it(tmp_path) -> None:
    first = run_smoke(tmp_path, "first", seed=0)
    other = run_smoke(tmp_path, "other", seed=1)
    assert first[SHARED] == other[SHARED] and all(first[stage] != other[stage] for stage in OWN)

    result = relay("delete", "first", "--yes", workspace=tmp_path)

    assert result.returncode == 0, result.stderr[-4000:]
    assert not (tmp_path / "artifacts" / "runs" / "first").exists()
    assert all(not stage_folder(tmp_path, first[stage]).exists() for stage in OWN)
    assert stage_folder(tmp_path, first[SHARED]).is_dir(), "the split the other run uses was removed"
    assert all(stage_folder(tmp_path, other[stage]).is_dir() for stage in OWN)
    assert active_mlflow_runs(tmp_path, "first") == []
    assert {own_name(run) for run in deleted_mlflow_runs(tmp_path, "first")} >= {"first", "gen-00", *OWN}
    assert len(active_mlflow_runs(tmp_path, "other")) == len(runs_by_name(tmp_path, "other")) > 0
    assert "kept: stages/" in result.stdout and "(used by other)" in result.stdout
    assert "mlflow runs restore" in result.stdout and "mlflow gc" in result.stdout
    assert "models:/smoke/1 (gen-00)" in result.stdout, result.stdout

    table = relay("generations", "other", workspace=tmp_path)
    assert table.returncode == 0, table.stderr[-4000:]
    assert "Run other: per-generation results" in table.stdout
    listed = relay("runs", workspace=tmp_path)
    assert "first" not in listed.stdout and "other" in listed.stdout

    again = run_smoke(tmp_path, "again", seed=0)
    assert again == first, "the same config and seed must fingerprint the same stages"
    rerun = runs_by_name(tmp_path, "again")
    assert rerun[SHARED].data.tags["cache_hit"] == "true"
    assert all(rerun[stage].data.tags["cache_hit"] == "false" for stage in OWN)
    assert all((stage_folder(tmp_path, first[stage]) / "manifest.json").is_file() for stage in OWN)

    # While another run may be running, it may take any folder as a cache hit: the record goes, the folders wait.
    finished = mark_running(tmp_path, "other")
    held = relay("delete", "again", "--yes", workspace=tmp_path)
    assert held.returncode == 0, held.stderr[-4000:]
    assert not (tmp_path / "artifacts" / "runs" / "again").exists() and active_mlflow_runs(tmp_path, "again") == []
    assert all(stage_folder(tmp_path, again[stage]).is_dir() for stage in OWN)
    assert "left for `relay gc`" in held.stdout and "run other is still running" in held.stdout
    (tmp_path / "artifacts" / "runs" / "other" / "ledger.json").write_text(finished)

    freed = relay("gc", workspace=tmp_path)
    assert freed.returncode == 0, freed.stderr[-4000:]
    assert all(not stage_folder(tmp_path, again[stage]).exists() for stage in OWN)
    assert all(stage_folder(tmp_path, fingerprint).is_dir() for fingerprint in other.values())


def mark_running(workspace: Path, run_id: str) -> str:
    """Make the run's ledger say RUNNING with a driver that lives (this test's process); returns the ledger as it was."""
    path = workspace / "artifacts" / "runs" / run_id / "ledger.json"
    finished = path.read_text()
    ledger = json.loads(finished)
    ledger.update(status="RUNNING", driver={"host": socket.gethostname(), "pid": os.getpid()})
    path.write_text(json.dumps(ledger))
    return finished


def test_gc_frees_folders_no_ledger_names_and_keeps_the_rest(tmp_path) -> None:
    kept = run_smoke(tmp_path, "kept", seed=0)
    removed = run_smoke(tmp_path, "removed", seed=1)
    shutil.rmtree(tmp_path / "artifacts" / "runs" / "removed")  # a run folder deleted by hand
    crashed = stage_folder(tmp_path, "f" * 64) / "scratch"  # an attempt that died before its manifest
    crashed.mkdir(parents=True)
    (crashed / "checkpoint.pt").write_bytes(b"x" * 1000)
    train_leftover = tmp_path / "artifacts" / "ray_train" / f"{'e' * 16}-g00_train"
    train_leftover.mkdir(parents=True)
    (train_leftover / "checkpoint").write_bytes(b"y" * 10)
    # half a table a killed worker left in a folder a run names (2 of 7 Ctrl-Cs during labeling left one), as the
    # store names its unfinished writes; the finished file beside it stays
    kept_train = stage_folder(tmp_path, kept["g00/train"])
    cut_off = kept_train / f"model.pt.tmp-{'a' * 32}"
    cut_off.write_bytes(b"z" * 100)
    finished = sorted(path.name for path in kept_train.iterdir() if path != cut_off)
    before = tree(tmp_path)

    dry = relay("gc", "--dry-run", workspace=tmp_path)

    assert dry.returncode == 0, dry.stderr[-4000:]
    assert tree(tmp_path) == before, "--dry-run removed something"
    assert all(removed[stage][:12] in dry.stdout for stage in OWN)
    assert "f" * 12 in dry.stdout and "incomplete" in dry.stdout
    assert cut_off.name in dry.stdout and "half a file" in dry.stdout

    result = relay("gc", workspace=tmp_path)

    assert result.returncode == 0, result.stderr[-4000:]
    assert all(not stage_folder(tmp_path, removed[stage]).exists() for stage in OWN)
    assert not crashed.parent.exists() and not train_leftover.exists()
    assert all(stage_folder(tmp_path, fingerprint).is_dir() for fingerprint in kept.values())
    assert not cut_off.exists() and sorted(path.name for path in kept_train.iterdir()) == finished
    assert "freed" in result.stdout
    table = relay("generations", "kept", workspace=tmp_path)
    assert table.returncode == 0, table.stderr[-4000:]


def test_refusals_exit_2_and_remove_nothing(tmp_path) -> None:
    run_smoke(tmp_path, "only", seed=0)
    orphan = stage_folder(tmp_path, "d" * 64)
    orphan.mkdir()
    (orphan / "manifest.json").write_text("{}")
    before = tree(tmp_path)
    tracked = len(active_mlflow_runs(tmp_path, "only"))

    unknown = relay("delete", "only", "nosuch", "--yes", workspace=tmp_path)
    assert unknown.returncode == 2
    assert "no run or sweep 'nosuch'" in unknown.stderr and "`relay runs" in unknown.stderr

    unasked = relay_off_a_terminal("delete", "only", workspace=tmp_path)
    assert unasked.returncode == 2
    assert "add --yes" in unasked.stderr

    finished = mark_running(tmp_path, "only")
    running = relay("delete", "only", "--yes", workspace=tmp_path)
    assert running.returncode == 2
    assert "run only is not deleted" in running.stderr and "then delete it" in running.stderr
    gc = relay("gc", workspace=tmp_path)
    assert gc.returncode == 0 and "nothing removed" in gc.stdout and "then run `relay gc` again" in gc.stdout
    (tmp_path / "artifacts" / "runs" / "only" / "ledger.json").write_text(finished)

    assert tree(tmp_path) == before
    assert len(active_mlflow_runs(tmp_path, "only")) == tracked
