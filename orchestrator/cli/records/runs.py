"""`relay runs`: the artifact store's pipeline runs, read from their run records and ledgers (not MLflow).

Each run record (``runs/RUN_ID/`` in the artifact store, docs/CONTRACTS.md, Workspace) holds
the resolved config and the ledger the runner rewrites after every stage, so the list needs no
tracking server and works for a run whose MLflow writes failed, from any machine that sees the
store. A Tune trial keeps only a ledger; its pipeline is read from the config its sweep saved
(WORKSPACE/tune/SWEEP/sweep-config.yaml). A ledger that still says RUNNING while its driver (same
host, pid gone) has died is shown as INTERRUPTED, with `relay resume` as the way on. `--status`,
`--pipeline` and `--last` pick rows of a workspace of many runs, and `--overrides` tells runs of one
pipeline apart by what each was started with; without them the table is as it always was.

What a ledger says of a run's status is run_status.py's, a Tune trial's records trials.py's: the
commands that act on one run ask them, and need no table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.cli.common import (
    Pipelines,
    add_artifact_uri,
    add_workspace,
    pipelines_of,
    store_named_by,
    store_of,
    store_option,
)
from orchestrator.cli.records.run_status import LedgerStage, LedgerView, ledger_status, read_view
from orchestrator.cli.records.trials import pipeline_kind, trial_kind
from orchestrator.cli.run.run_locations import local_path
from orchestrator.config import ARTIFACT_URI_ENV, WORKSPACE_ENV, RunSettings, resolve_workspace
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import (
    CONFIG_FILE,
    DONE_STATES,
    LEDGER_FILE,
    RUNS,
    RunStatus,
    read_command_record,
    tracking_lost_at,
)
from orchestrator.errors import ArtifactError, ConfigError
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.report import text_table

HEADERS = ["run", "pipeline", "status", "generations", "best", "started"]
OVERRIDES_WIDTH = 60  # characters of a run's overrides `relay runs --overrides` shows; longer ones end in "..."
INCOMPLETE_MARK = "*"  # after the status of a run whose MLflow record is incomplete; the line under the table says so


@dataclass(frozen=True)
class RunRow:
    """One line of `relay runs`."""

    run_id: str
    pipeline: str
    status: RunStatus
    generations: str  # "done/total"
    best: str  # "balanced_accuracy 0.5600 (g01)" or "-"
    started: str  # the ledger's ISO time (UTC), "" before the runner started
    problem: str | None = None  # why the ledger cannot be read (status UNREADABLE): printed below the table
    name: str = ""  # the config's `name` (the ledger's `pipeline`), which `--pipeline` also matches
    tracking_lost_at: str | None = None  # where the tracking store stopped answering: its MLflow record is incomplete

    def cells(self) -> list[str]:
        status = self.status + (INCOMPLETE_MARK if self.tracking_lost_at is not None else "")
        return [self.run_id, self.pipeline, status, self.generations, self.best, _local_time(self.started)]


def run_rows(store: ArtifactStore, pipelines: Pipelines, sweeps: Path | None = None) -> list[RunRow]:
    """Every run recorded in the store (a config, a ledger or both), newest first.

    ``sweeps``: the folder of `relay tune`'s sweep folders (WORKSPACE/tune), where a trial's pipeline is found.
    """
    rows = [_row(store, run_id, pipelines, sweeps) for run_id in run_ids(store)]
    return sorted(rows, key=lambda row: (row.started, row.run_id), reverse=True)


def run_ids(store: ArtifactStore) -> set[str]:
    """The ids of ``runs/RUN_ID/`` holding a config (a `relay run`) or a ledger (a Tune trial keeps only that)."""
    found = store.newest_records(RUNS, CONFIG_FILE) + store.newest_records(RUNS, LEDGER_FILE)
    return {parts[1] for parts in (relative.split("/") for relative in found) if len(parts) == 3}


def _row(store: ArtifactStore, run_id: str, pipelines: Pipelines, sweeps: Path | None) -> RunRow:
    """The run's line; an unreadable ledger still gets one, so the list shows every run."""
    read = read_view(store, run_id)
    own_kind = pipeline_kind(store, run_id)  # None for a Tune trial: its sweep keeps its config
    kind = own_kind or trial_kind(sweeps, run_id, store)
    if read.problem is not None:
        return RunRow(run_id, kind or "?", RunStatus.UNREADABLE, "-", "-", "", problem=read.problem)
    ledger = read.view or LedgerView()
    spec = pipelines.get(kind) if kind else None
    reported = _reported_generation(ledger) if own_kind is None else None
    return RunRow(
        run_id=run_id,
        pipeline=kind or ledger.pipeline,
        status=ledger_status(ledger),
        generations=_generations(ledger.generations, ledger.stages, reported),
        best=_best(headline_metric(spec), result_stages(ledger.stages, spec)),
        started=ledger.started,
        name=ledger.pipeline,
        tracking_lost_at=tracking_lost_at(store, run_id),
    )


def headline_metric(spec: PipelineSpec | None) -> str | None:
    """The pipeline's first single summary metric (PipelineSpec.summary), None without a spec."""
    return next((m for m in (spec.summary.values() if spec else ()) if not m.endswith("/*")), None)


def result_stages(stages: Mapping[str, LedgerStage], spec: PipelineSpec | None) -> dict[str, LedgerStage]:
    """The stages whose metrics are the pipeline's results: not those of its reference generations (a teacher)."""
    skipped = spec.reference_generations if spec else frozenset()
    return {name: stage for name, stage in stages.items() if stage.generation not in skipped}


def _generations(
    per_generation: Mapping[int, int], stages: Mapping[str, LedgerStage], reported: int | None = None
) -> str:
    """`done/total`: a generation is done when every one of its stages succeeded or was cached, or when it is
    ``reported``, the generation a Tune trial ran up to its metric stage and reported (``_reported_generation``)."""
    if not per_generation:
        return "-"
    done_counts: dict[int, int] = {}
    for entry in stages.values():
        if entry.generation is not None and entry.state in DONE_STATES:
            done_counts[entry.generation] = done_counts.get(entry.generation, 0) + 1
    done = sum(done_counts.get(g, 0) == n or g == reported for g, n in per_generation.items())
    return f"{done}/{len(per_generation)}"


def _reported_generation(ledger: LedgerView) -> int | None:
    """The generation whose metric stage a Tune trial's last attempt ran to and finished (its ``stop_after``), if any.

    Why: a trial runs each generation only up to the stage whose metric it reports; the generation's
    later stages (pseudo-labels for the next one) run with the next generation. A trial the scheduler
    (ASHA) stopped after its g00 report therefore lacked them and showed `STOPPED 0/2`, while one killed
    during g01, which had run them, showed `1/2`: both had finished g00 as the sweep counts it.
    """
    entry = ledger.stages.get(ledger.stop_after or "")
    return entry.generation if entry is not None and entry.state in DONE_STATES else None


def _best(headline: str | None, stages: Mapping[str, LedgerStage]) -> str:
    """The best (highest) value of the pipeline's headline metric (`<role>/<metric>`) over ``stages``."""
    if headline is None or "/" not in headline:
        return "-"
    role, metric = headline.split("/", 1)
    values = [
        (entry.metrics[metric], entry.generation)
        for name, entry in stages.items()
        if name.rsplit("/", 1)[-1] == role and metric in entry.metrics
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
    check_named_store_exists(args, store)
    pipelines, sweeps = pipelines_of(args), resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
    every = run_rows(store, pipelines, sweeps)
    if not every:  # a store named on purpose that is not there was refused above: this one has no run yet
        print(f"no runs in {store.uri} yet: start one with `relay run pipelines/configs/smoke.yaml`")
        return 0
    rows = chosen_rows(every, args.status, args.pipeline, args.last)
    if not rows:
        print(f"none of the {len(every)} runs in {store.uri} is {_asked(args)}; `relay runs` lists them all")
        return 0
    headers, body = HEADERS, [row.cells() for row in rows]
    if args.overrides:
        headers, body = (
            [*HEADERS, "overrides"],
            [[*cells, overrides_cell(store, row.run_id)] for cells, row in zip(body, rows)],
        )
    print(text_table(headers, body))
    unreadable = [f"{row.run_id} is {RunStatus.UNREADABLE}: {row.problem}" for row in rows if row.problem is not None]
    if unreadable:
        print("\n" + "\n".join(unreadable))
    incomplete = incomplete_tracking_line(rows, store.uri)
    if incomplete:
        print(f"\n{incomplete}")
    no_best = not_installed_best_line(rows, store, pipelines, sweeps)
    if no_best:
        print(no_best, file=sys.stderr)
    return 0


def not_installed(kind: str | None, pipelines: Pipelines) -> bool:
    """Whether ``kind`` is a pipeline that no package installed here declares (one declared but refused,
    ``LoadedPipelines.rejected``, is installed: reading its run says why it cannot be used)."""
    return kind is not None and kind not in pipelines and kind not in getattr(pipelines, "rejected", {})


def not_installed_best_line(rows: list[RunRow], store: ArtifactStore, pipelines: Pipelines, sweeps: Path) -> str | None:
    """The stderr line saying why `best` is `-` for the rows made by pipelines no package installed here declares.

    Why: the best column is the pipeline's headline metric, which only its spec names (PipelineSpec.summary),
    so every run of a plug-in read where the plug-in is not installed showed `-`, as if it had no result.
    None when no shown row is such a run (a pipeline declared but refused is installed: it says why on use).
    """
    by_kind: dict[str, list[str]] = {}
    for row in rows:
        if row.best != "-" or row.status is RunStatus.UNREADABLE or row.pipeline in pipelines:
            continue
        kind = pipeline_kind(store, row.run_id) or trial_kind(sweeps, row.run_id, store)
        if not_installed(kind, pipelines):
            by_kind.setdefault(kind, []).append(row.run_id)
    if not by_kind:
        return None
    which = "; ".join(f"pipeline {kind!r}: {', '.join(ids)}" for kind, ids in sorted(by_kind.items()))
    return (
        f"relay: best is - for the runs of pipelines that no package installed here declares ({which}): the column "
        "is the pipeline's headline metric, which its package names; install that package (its `relay.pipelines` "
        "entry point) to fill it, or read a run's metrics with `relay generations RUN_ID`"
    )


def check_named_store_exists(args: argparse.Namespace, store: ArtifactStore) -> None:
    """Refuse (exit 2) a store named on purpose that is not there: a missing workspace (--workspace,
    $RELAY_WORKSPACE), or a missing artifact store folder (--artifact-uri, $RELAY_ARTIFACT_URI).

    Why: `relay runs --workspace /typo` said "no runs ... yet" and exited 0, as if it had looked, while
    `relay generations` and `relay gc` refuse the same path. The default workspace not made yet, or a
    workspace no run has written to yet, is no mistake: it has no runs yet, and says so.
    """
    folder = local_path(store.uri)
    if folder is None or Path(folder).exists():
        return
    key = store_named_by(args)
    missing: Path | str = folder
    if key in ("--workspace", f"${WORKSPACE_ENV}"):
        missing = resolve_workspace(RunSettings(workspace=args.workspace))
        if missing.is_dir():
            return
    elif key not in ("--artifact-uri", f"${ARTIFACT_URI_ENV}"):
        return
    what = "workspace" if isinstance(missing, Path) else "artifact store"
    raise ConfigError([f"{key}: the {what} {missing} does not exist: check the path"], "the command line")


def incomplete_tracking_line(rows: list[RunRow], store_uri: str) -> str | None:
    """The line under `relay runs` naming the runs marked INCOMPLETE_MARK and how to fill their MLflow record in.

    Why: a run whose tracking store stopped answering (or failed at its start) is listed FINISHED like any
    other, while MLflow lacks some or all of it; `relay run` said so once, and `relay runs` never did.
    """
    marked = [row.run_id for row in rows if row.tracking_lost_at is not None]
    if not marked:
        return None
    which = marked[0] if len(marked) == 1 else "RUN"
    return (
        f"{INCOMPLETE_MARK} incomplete MLflow record (the tracking store stopped answering while the run ran, or "
        f"failed at its start): {', '.join(marked)}; once the store answers, `relay resume {which}"
        f"{store_option(store_uri)}` fills it in (completed stages are skipped)"
    )


def chosen_rows(
    rows: list[RunRow], statuses: list[RunStatus] | None, pipeline: str | None, last: int | None
) -> list[RunRow]:
    """The rows (newest first) with one of ``statuses`` and of ``pipeline`` (its kind or its config's `name`),
    the newest ``last`` of them; None for any of the three: no filter."""
    kept = [
        row
        for row in rows
        if (not statuses or row.status in statuses) and (pipeline is None or pipeline in (row.pipeline, row.name))
    ]
    return kept if last is None else kept[:last]


def _asked(args: argparse.Namespace) -> str:
    """The filters given, as a phrase: `FAILED or STOPPED, of pipeline crest`."""
    said = [" or ".join(args.status)] if args.status else []
    return ", ".join(said + ([f"of pipeline {args.pipeline}"] if args.pipeline else []))


def overrides_cell(store: ArtifactStore, run_id: str) -> str:
    """The `key=value` overrides run ``run_id`` was started with (its command.json), cut to OVERRIDES_WIDTH
    characters; "-" when it has none, "?" when it keeps no command record (a Tune trial) or it cannot be read."""
    try:
        overrides = read_command_record(store, run_id).get("overrides")
    except ArtifactError:
        return "?"
    if not isinstance(overrides, list):
        return "?"
    text = " ".join(str(item) for item in overrides) or "-"
    return text if len(text) <= OVERRIDES_WIDTH else text[: OVERRIDES_WIDTH - 3] + "..."


def status_filter(value: str) -> list[RunStatus]:
    """`--status failed,stopped` as the statuses `relay runs` shows (`not-started` for NOT STARTED); an unknown
    one is bad input naming them all."""
    statuses = [item.strip().upper().replace("_", " ").replace("-", " ") for item in value.split(",") if item.strip()]
    unknown = [item for item in statuses if item not in tuple(RunStatus)]
    if unknown or not statuses:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(unknown) or repr(value)}; pick from {', '.join(RunStatus)} "
            "(several: comma-separated; NOT STARTED as not-started)"
        )
    return [RunStatus(item) for item in statuses]


def positive_count(value: str) -> int:
    """`--last N`: a whole number of runs, 1 or more."""
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of runs, 1 or more, got {value!r}")
    return count


def register(commands: Any) -> None:
    about = "the artifact store's pipeline runs: status, generations done, best metric"
    parser = commands.add_parser("runs", help=about, description=about)
    add_workspace(parser)
    add_artifact_uri(parser)
    parser.add_argument(
        "--status",
        type=status_filter,
        action="extend",
        metavar="STATUS",
        help=f"only runs with this status ({', '.join(RunStatus)}; comma-separated or repeated for several)",
    )
    parser.add_argument("--pipeline", metavar="NAME", help="only runs of this pipeline (crest) or config name (smoke)")
    parser.add_argument("--last", type=positive_count, metavar="N", help="only the newest N runs (after the filters)")
    parser.add_argument(
        "--overrides",
        action="store_true",
        help=f"add a column with the key=value overrides each run was started with (cut to {OVERRIDES_WIDTH} characters)",
    )
    parser.set_defaults(handler=cmd_runs)
