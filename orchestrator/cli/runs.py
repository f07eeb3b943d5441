"""`relay runs`: the artifact store's pipeline runs, read from their run records and ledgers (not MLflow).

Each run record (``runs/RUN_ID/`` in the artifact store, docs/ARCHITECTURE.md, Workspace) holds
the resolved config and the ledger the runner rewrites after every stage, so the list needs no
tracking server and works for a run whose MLflow writes failed, from any machine that sees the
store. A ledger that still says RUNNING while its driver (same host, pid gone) has died is
shown as INTERRUPTED, with `relay resume` as the way on.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.cli.common import Pipelines, add_artifact_uri, add_workspace, pipelines_of, store_of
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, LEDGER_FILE, RUNS, read_ledger, record_path
from orchestrator.errors import ArtifactError, ConfigError
from orchestrator.tracking.report import text_table
from orchestrator.yaml_input import yaml_mapping

DONE_STATES = ("succeeded", "cached")
HEADERS = ["run", "pipeline", "status", "generations", "best", "started"]


@dataclass(frozen=True)
class RunRow:
    """One line of `relay runs`."""

    run_id: str
    pipeline: str
    status: str
    generations: str  # "done/total"
    best: str  # "balanced_accuracy 0.5600 (g01)" or "-"
    started: str  # the ledger's ISO time (UTC), "" before the runner started

    def cells(self) -> list[str]:
        return [self.run_id, self.pipeline, self.status, self.generations, self.best, _local_time(self.started)]


def run_rows(store: ArtifactStore, pipelines: Pipelines) -> list[RunRow]:
    """Every run recorded in the store (a config, a ledger or both), newest first."""
    rows = [_row(store, run_id, pipelines) for run_id in run_ids(store)]
    return sorted(rows, key=lambda row: (row.started, row.run_id), reverse=True)


def run_ids(store: ArtifactStore) -> set[str]:
    """The ids of ``runs/RUN_ID/`` holding a config (a `relay run`) or a ledger (a Tune trial keeps only that)."""
    found = store.newest_records(RUNS, CONFIG_FILE) + store.newest_records(RUNS, LEDGER_FILE)
    return {parts[1] for parts in (relative.split("/") for relative in found) if len(parts) == 3}


def _row(store: ArtifactStore, run_id: str, pipelines: Pipelines) -> RunRow:
    ledger = _ledger(store, run_id)
    kind = _pipeline_kind(store, run_id)
    stages: Mapping[str, Mapping[str, Any]] = ledger.get("stages", {})
    spec = pipelines.get(kind) if kind else None
    headline = next((m for m in (spec.summary.values() if spec else ()) if not m.endswith("/*")), None)
    return RunRow(
        run_id=run_id,
        pipeline=kind or ledger.get("pipeline", "?"),
        status=_status(ledger),
        generations=_generations(ledger.get("generations", {}), stages),
        best=_best(headline, stages),
        started=ledger.get("started", ""),
    )


def _ledger(store: ArtifactStore, run_id: str) -> Mapping[str, Any]:
    """The run's ledger; empty when there is none yet or it cannot be read (one bad record spoils no list)."""
    try:
        return read_ledger(store, run_id) or {}
    except (ArtifactError, ValueError):
        return {}


def _pipeline_kind(store: ArtifactStore, run_id: str) -> str | None:
    """The `pipeline:` of the run's saved config (None for a Tune trial, which keeps no config of its own)."""
    relative = record_path(run_id, CONFIG_FILE)
    try:
        text = store.read_record(relative)
        kind = None if text is None else yaml_mapping(text.decode(), relative).get("pipeline")
    except (ArtifactError, ConfigError, UnicodeDecodeError):
        return None
    return kind if isinstance(kind, str) else None


def _status(ledger: Mapping[str, Any]) -> str:
    """The ledger's status; RUNNING with a dead driver on this host is INTERRUPTED; no ledger: NOT STARTED."""
    status = ledger.get("status")
    if status is None:
        return "NOT STARTED"
    driver = ledger.get("driver") or {}
    if status == "RUNNING" and driver.get("host") == socket.gethostname() and not _alive(int(driver.get("pid", 0))):
        return "INTERRUPTED"
    return str(status)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _generations(per_generation: Mapping[str, int], stages: Mapping[str, Mapping[str, Any]]) -> str:
    """`done/total`: a generation is done when every one of its stages succeeded or was cached."""
    if not per_generation:
        return "-"
    done_counts: dict[int, int] = {}
    for entry in stages.values():
        if entry.get("generation") is not None and entry.get("state") in DONE_STATES:
            done_counts[int(entry["generation"])] = done_counts.get(int(entry["generation"]), 0) + 1
    done = sum(done_counts.get(int(g), 0) == n for g, n in per_generation.items())
    return f"{done}/{len(per_generation)}"


def _best(headline: str | None, stages: Mapping[str, Mapping[str, Any]]) -> str:
    """The best (highest) value of the pipeline's headline metric (`<role>/<metric>`) over the generations."""
    if headline is None or "/" not in headline:
        return "-"
    role, metric = headline.split("/", 1)
    values = [
        (float(entry["metrics"][metric]), entry.get("generation"))
        for name, entry in stages.items()
        if name.rsplit("/", 1)[-1] == role and metric in (entry.get("metrics") or {})
    ]
    if not values:
        return "-"
    value, generation = max(values, key=lambda item: item[0])
    where = f" (g{generation:02d})" if generation is not None else ""
    return f"{metric} {value:.4f}{where}"


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "-"


def cmd_runs(args: argparse.Namespace) -> int:
    store = store_of(args)
    rows = run_rows(store, pipelines_of(args))
    if not rows:
        print(f"no runs in {store.uri} yet: start one with `relay run pipelines/configs/smoke.yaml`")
        return 0
    print(text_table(HEADERS, [row.cells() for row in rows]))
    return 0


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "runs", help="the artifact store's pipeline runs: status, generations done, best metric"
    )
    add_workspace(parser)
    add_artifact_uri(parser)
    parser.set_defaults(handler=cmd_runs)
