"""`relay delete` and `relay gc`: free the space runs take without breaking the runs that stay.

What a run owns (docs/CONTRACTS.md, What a run owns, and freeing space): its record (``runs/RUN_ID/``), its MLflow runs
(the pipeline run, its generation and stage runs, all tagged ``relay.pipeline_run = RUN_ID``) and the
stage folders its ledger names by fingerprint (``stages/FINGERPRINT/``, plus a data-parallel stage's
``ray_train/FINGERPRINT16-STAGE/``). Stage folders are a cache shared by every run whose stages
fingerprint the same, so one is removed only when no other run's ledger names it: the ledgers are
the reference counts (stage_folders.py). Relay never erases an MLflow run itself: it marks it deleted,
which `mlflow runs restore` undoes and `mlflow gc` makes final (mlflow_runs.py). Registered model
versions and logged models are left: a run whose stages were cache hits shares the first run's model
and version (identical weights). So are the aliases on them, which it names: a model loaded by alias
would otherwise go on loading a deleted run's weights unsaid.

A run that may be running (RUNNING or STARTING with a driver that lives, or cannot be checked from
here: ``resume_guard.check_not_running``) may at any moment take a stage folder as a cache hit, and
names it in its ledger only after reading it; so while one exists no stage folder is removed at all:
`relay delete` then removes records and MLflow runs only, and `relay gc` nothing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cli.common import add_artifact_uri, add_workspace, store_named_by, store_of, store_option
from orchestrator.cli.preflight import check_run_id, store_folders_problem
from orchestrator.cli.records import runs
from orchestrator.cli.records.mlflow_runs import (
    MLFLOW_UNDO,
    TrackedRuns,
    aliases_note,
    delete_tracked,
    mlflow_part,
    tracked_runs,
    tracking_store_of,
)
from orchestrator.cli.records.stage_folders import (
    FINGERPRINT_PREFIX,
    SHOWN_FINGERPRINT,
    STAGES,
    StageFolder,
    held_back,
    human_size,
    live_runs,
    may_be_running,
    read_ledgers,
    stage_folders,
)
from orchestrator.cli.records.sweep_deletion import (
    SweepParts,
    remove_folders,
    sweep_parts,
    sweeps_held,
    trials_by_sweep,
)
from orchestrator.cli.records.workspace import default_tracking_key
from orchestrator.cli.run.run_record import MLFLOW_ID_HINT, MLFLOW_ID_SHAPE
from orchestrator.engine.artifacts import TRAIN_DIR, ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, RUNS, record_path
from orchestrator.errors import ArtifactError, ConfigError


@dataclass
class DeletePlan:
    """What `relay delete` removes, what it keeps and why."""

    run_ids: list[str]
    tracked: dict[str, TrackedRuns] = field(default_factory=dict)
    folders: list[StageFolder] = field(default_factory=list)  # named only by the deleted runs
    shared: dict[str, list[str]] = field(default_factory=dict)  # fingerprint -> the other runs naming it
    held_back: list[str] = field(default_factory=list)  # why no stage folder is removed now
    dependents: list[str] = field(default_factory=list)  # other runs whose config starts from a deleted run's stage
    sweeps: list[SweepParts] = field(default_factory=list)  # sweeps named in place of runs (``sweep_deletion``)


def check_known(store: ArtifactStore, run_ids: list[str], known: set[str]) -> None:
    """Refuse (exit 2) an unsafe or unknown run id, naming `relay runs`; every problem at once."""
    for run_id in run_ids:
        check_run_id(run_id)
    unknown = [run_id for run_id in run_ids if run_id not in known]
    if unknown:
        raise ConfigError(
            [
                f"no run or sweep {run_id!r} in the artifact store {store.uri}; `relay runs{store_option(store.uri)}` "
                "lists its runs (or pass the store the run wrote to: --workspace, --artifact-uri)"
                + MLFLOW_ID_HINT
                * bool(MLFLOW_ID_SHAPE.fullmatch(run_id))
                for run_id in unknown
            ],
            "the command line",
        )


def named(
    args: argparse.Namespace, store: ArtifactStore, names: list[str], known: set[str]
) -> tuple[list[str], list[SweepParts]]:
    """The runs ``names`` stand for, and the sweeps among them: a name that is no run's id and names a sweep
    stands for its trials (``sweep_deletion``); any other name stays, for ``check_known`` to refuse. The trials'
    records are read only when a name is no run's id: deleting runs by id reads no other run's."""
    by_sweep = trials_by_sweep(store, known) if set(names) - known else {}
    run_ids: list[str] = []
    sweeps: list[SweepParts] = []
    for name in names:
        parts = None if name in known else sweep_parts(args, store, name, by_sweep.get(name, {}))
        if parts is not None:
            sweeps.append(parts)
        run_ids.extend(parts.trials if parts is not None else [name])
    return list(dict.fromkeys(run_ids)), sweeps


def check_deletable(store: ArtifactStore, run_ids: list[str], driver_gone: bool) -> None:
    """Refuse (exit 2) to delete a run whose driver may still run it: it would write into what is removed."""
    problems = [
        f"run {run_id} is not deleted: {reason}"
        for run_id in run_ids
        if (reason := may_be_running(store, run_id, driver_gone, "delete")) is not None
    ]
    if problems:
        raise ConfigError(problems, "the command line")


def delete_plan(args: argparse.Namespace, store: ArtifactStore, names: list[str]) -> DeletePlan:
    """What deleting the runs and sweeps ``names`` removes: checked first (unknown or running ones are refused),
    nothing written."""
    known = runs.run_ids(store)
    run_ids, sweeps = named(args, store, names, known)
    check_known(store, run_ids, known)
    check_deletable(store, run_ids, args.driver_gone)
    others = known - set(run_ids)
    ledgers = read_ledgers(store, known)
    own, theirs = ledgers.named_by(run_ids), ledgers.named_by(others)
    plan = DeletePlan(run_ids, held_back=held_back(store, ledgers, others), sweeps=sweeps)
    plan.folders = stage_folders(store, own - theirs, ledgers.stage_names)
    plan.shared = {
        fingerprint: sorted(other for other in others if fingerprint in ledgers.by_run.get(other, ()))
        for fingerprint in sorted(own & theirs)
    }
    key = default_tracking_key(args.workspace)
    plan.tracked = {run_id: tracked_runs(tracking_store_of(args, store, run_id), run_id, key) for run_id in run_ids}
    plan.dependents = dependents(store, run_ids, others)
    return plan


def dependents(store: ArtifactStore, run_ids: list[str], others: Iterable[str]) -> list[str]:
    """Other runs whose config starts from a stage of a deleted run (``init.source: run:RUN_ID/STAGE``)."""
    found = []
    for other in sorted(others):
        try:
            text = (store.read_record(record_path(other, CONFIG_FILE)) or b"").decode(errors="replace")
        except ArtifactError:
            continue
        named = [run_id for run_id in run_ids if f"run:{run_id}/" in text]
        found += [
            f"run {other}'s config starts from run:{run_id}/...: its finished stages keep their own outputs, but "
            f"`relay resume {other}` or a rerun of its config will not find run {run_id}"
            for run_id in named
        ]
    return found


def print_delete_plan(store: ArtifactStore, plan: DeletePlan, verb: str) -> None:
    print(f"relay delete {verb} from {store.uri}:")
    for sweep in plan.sweeps:
        print(sweep.line())
    for run_id in plan.run_ids:
        print(f"  run {run_id}: its record {RUNS}/{run_id}/; {mlflow_part(plan.tracked[run_id])}")
    print_folders(plan)
    for fingerprint, others in plan.shared.items():
        print(f"  kept: {STAGES}/{fingerprint[:SHOWN_FINGERPRINT]}… (used by {', '.join(others)})")
    registered = [entry for tracked in plan.tracked.values() for entry in tracked.registered]
    if registered:
        print(
            f"  kept: the registered model versions {', '.join(registered)} and their logged models (weights MLflow "
            "keeps a copy of): a run that trained identical weights shares them; delete a version in the MLflow UI "
            "or with MlflowClient().delete_model_version(NAME, VERSION)"
        )
    for tracked in plan.tracked.values():
        if tracked.aliases:
            print(f"  note: {aliases_note(tracked)}")
    for line in plan.dependents:
        print(f"  note: {line}")


def print_folders(plan: DeletePlan) -> None:
    """The stage folders removed, or why they wait for `relay gc`; "none" when the run holds no folder of its own."""
    size = human_size(_total(plan.folders))
    if not plan.folders:
        print("  stage folders no other run uses: none")
    elif plan.held_back:
        print(
            f"  no stage folder now: the {len(plan.folders)} no other run uses ({size}) are left for `relay gc`, because:"
        )
        for reason in plan.held_back:
            print(f"    {reason}")
    else:
        print(f"  {len(plan.folders)} stage folder(s) no other run uses, {size}:")
        for folder in plan.folders:
            print(folder.line())


def _total(folders: Iterable[StageFolder]) -> int:
    return sum(folder.size for folder in folders)


def confirmed(args: argparse.Namespace) -> bool:
    """--yes, or a `y` typed at the terminal; off a terminal without --yes the command is refused (exit 2)."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(
            ["--yes: not on a terminal, so there is no one to ask; add --yes to delete what is listed above"],
            "the command line",
        )
    try:
        answer = input("Delete? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def check_removable(args: argparse.Namespace, store: ArtifactStore, within: tuple[str, ...] | None = None) -> None:
    """Refuse (exit 2) a local store whose folders this user may not write in (``within``: only those), before
    anything is removed.

    Why: `relay delete` marked the run's MLflow runs deleted, then failed (exit 1) at its record in a runs/
    of another user, or at its stage folders in such a stages/ (the record already gone).
    """
    problem = store_folders_problem(store.uri, store_named_by(args), within, doing="remove files in")
    if problem:
        raise ConfigError([problem], "the command line")


def cmd_delete(args: argparse.Namespace) -> int:
    store = store_of(args)
    check_removable(args, store)
    names = list(dict.fromkeys(args.run_ids))
    plan = delete_plan(args, store, names)
    print_delete_plan(store, plan, "will remove" if not args.yes else "removes")
    if not confirmed(args):
        print("nothing deleted")
        return 0
    if not args.yes:  # the answer took a while: what a run started meanwhile uses is kept, and no new trial
        agreed = {folder.fingerprint for folder in plan.folders}
        shown = set(plan.run_ids)
        plan = delete_plan(args, store, names)
        plan.folders = [folder for folder in plan.folders if folder.fingerprint in agreed]
        if not set(plan.run_ids) <= shown:
            print("nothing deleted: a sweep named has new trials since the list above; run relay delete again")
            return 0
    with sweeps_held(plan.sweeps):  # a `relay tune` of one that took its folder since the check: refused, nothing gone
        return carry_out(store, plan)


def carry_out(store: ArtifactStore, plan: DeletePlan) -> int:
    """MLflow first (undoable), then the records, then the stage folders: a deletion cut off half way leaves
    orphan folders, which `relay gc` finds, never a record whose outputs are gone."""
    for run_id in plan.run_ids:
        delete_tracked(plan.tracked[run_id])
        store.delete_folder(f"{RUNS}/{run_id}")
        tracked = plan.tracked[run_id]
        print(f"deleted run {run_id}: its record and {len(tracked.runs)} MLflow run(s)")
    swept = 0
    for sweep in plan.sweeps:
        swept += sweep.size
        delete_tracked(sweep.tracked)
        remove_folders(sweep)
        print(f"deleted sweep {sweep.name}: {len(sweep.folders)} folder(s) and {len(sweep.tracked.runs)} MLflow run(s)")
    folders = [] if plan.held_back else plan.folders
    for folder in folders:
        for path in folder.paths():
            store.delete_folder(path)
    sweeps = " and the sweeps' folders" if plan.sweeps else ""
    print(f"removed {len(folders)} stage folder(s){sweeps}, {human_size(_total(folders) + swept)} freed")
    tracked_all = [*plan.tracked.values(), *(sweep.tracked for sweep in plan.sweeps)]
    for uri in sorted({tracked.uri for tracked in tracked_all if tracked.runs}):
        print(MLFLOW_UNDO.format(uri=shlex.quote(uri)))
    return 0


@dataclass
class GcPlan:
    """What `relay gc` removes: stage folders no ledger names, Ray Train folders of no named fingerprint, and
    the unfinished writes (``NAME.tmp-HEX``) left in the folders it keeps."""

    folders: list[StageFolder]
    train_runs: list[tuple[str, int]]  # (name, bytes) of ray_train folders whose stage folder is gone
    held_back: list[str]
    temp_files: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes) in the kept stage folders

    def size(self) -> int:
        return _total(self.folders) + sum(size for _, size in (*self.train_runs, *self.temp_files))


def gc_plan(store: ArtifactStore) -> GcPlan:
    known = runs.run_ids(store)
    ledgers = read_ledgers(store, known)
    named = ledgers.named_by(known)
    folders = stage_folders(store, set(store.subfolders(STAGES)) - named, ledgers.stage_names)
    kept = {fingerprint[:FINGERPRINT_PREFIX] for fingerprint in named}
    taken = {name for folder in folders for name in folder.train_runs}
    loose = [
        (name, store.folder_bytes(f"{TRAIN_DIR}/{name}"))
        for name in store.subfolders(TRAIN_DIR)
        if name[:FINGERPRINT_PREFIX] not in kept and name not in taken
    ]
    removed = {folder.fingerprint for folder in folders}
    temp = [found for fingerprint in sorted(named - removed) for found in store.temp_files(f"{STAGES}/{fingerprint}")]
    return GcPlan(folders, loose, held_back(store, ledgers, known), temp)


def print_gc_plan(store: ArtifactStore, plan: GcPlan, verb: str) -> None:
    print(f"relay gc {verb} from {store.uri}:")
    complete = [folder for folder in plan.folders if folder.complete]
    incomplete = [folder for folder in plan.folders if not folder.complete]
    if complete:
        print(f"  {len(complete)} stage folder(s) no run's ledger names:")
    for folder in complete:
        print(folder.line())
    if incomplete:
        print(f"  {len(incomplete)} incomplete stage folder(s) no run's ledger names:")
    for folder in incomplete:
        print(folder.line())
    if not plan.folders and not plan.train_runs and not plan.temp_files:
        print("  nothing: every stage folder is named by a run's ledger, and none holds a half-written file")
    for name, size in plan.train_runs:
        print(f"  {TRAIN_DIR}/{name}  {human_size(size)} (a Ray Train folder of no stage a run names)")
    for path, size in plan.temp_files:
        print(f"  {path}  {human_size(size)} (half a file: a write cut off by a kill, never renamed into place)")


def check_store_exists(store: ArtifactStore) -> None:
    """A local store that is not there is a mistyped path (bad input), not an empty store: `relay gc` said
    "0 B freed" for it, as if it had looked."""
    folder = store.local_path("")
    if folder is not None and not folder.exists():
        raise ConfigError([f"{folder} does not exist: check the path (`relay runs` lists a store's runs)"], "relay gc")


def cmd_gc(args: argparse.Namespace) -> int:
    store = store_of(args)
    check_store_exists(store)
    if not args.dry_run:
        check_removable(args, store, within=(STAGES, TRAIN_DIR))
    plan = gc_plan(store)
    if plan.held_back:
        print(f"relay gc: nothing removed from {store.uri}, because:")
        for reason in plan.held_back:
            print(f"  {reason}")
        return 0
    print_gc_plan(store, plan, "would remove (--dry-run)" if args.dry_run else "removes")
    if args.dry_run:
        print(f"{human_size(plan.size())} would be freed")
        return 0
    if started := live_runs(store, runs.run_ids(store)):  # a run started while the store was listed
        print("relay gc: nothing removed, because:\n  " + "\n  ".join(started))
        return 0
    for folder in plan.folders:
        for path in folder.paths():
            store.delete_folder(path)
    for name, _ in plan.train_runs:
        store.delete_folder(f"{TRAIN_DIR}/{name}")
    for path, _ in plan.temp_files:
        store.delete_file(path)
    print(f"{human_size(plan.size())} freed")
    return 0


def register(commands: Any) -> None:
    about = (
        "delete runs or sweeps: their record, their MLflow runs (marked deleted) and the stage outputs no other run "
        "uses (a sweep's: its trials', its MLflow run and its folder); asks first on a terminal"
    )
    parser = commands.add_parser("delete", help=about, description=about)
    parser.add_argument(
        "run_ids",
        nargs="+",
        metavar="RUN_ID",
        help="the runs to delete (`relay runs` lists them), or a sweep's name: its trials, its MLflow run and folder",
    )
    add_workspace(parser)
    add_artifact_uri(parser)
    parser.add_argument("--yes", "-y", action="store_true", help="delete without asking (needed off a terminal)")
    parser.add_argument(
        "--driver-gone",
        action="store_true",
        help="the run's driver on another machine is known to be gone (its ledger still says RUNNING)",
    )
    parser.set_defaults(handler=cmd_delete)
    about = (
        "free the stage outputs no run's ledger names (left by runs removed by hand, or attempts that crashed) "
        "and half-written files a killed writer left; "
        "removes nothing while a run may be running"
    )
    parser = commands.add_parser("gc", help=about, description=about)
    add_workspace(parser)
    add_artifact_uri(parser)
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    parser.set_defaults(handler=cmd_gc)
