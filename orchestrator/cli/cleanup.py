"""`relay delete` and `relay gc`: free the space runs take without breaking the runs that stay.

What a run owns (docs/CONTRACTS.md, What a run owns, and freeing space): its record (``runs/RUN_ID/``), its MLflow runs
(the pipeline run, its generation and stage runs, all tagged ``relay.pipeline_run = RUN_ID``) and the
stage folders its ledger names by fingerprint (``stages/FINGERPRINT/``, plus a data-parallel stage's
``ray_train/FINGERPRINT16-STAGE/``). Stage folders are a cache shared by every run whose stages
fingerprint the same, so one is removed only when no other run's ledger names it: the ledgers are
the reference counts. Relay never erases an MLflow run itself: it marks it deleted, which `mlflow runs
restore` undoes and `mlflow gc` makes final. Registered model versions and logged models are left: a
run whose stages were cache hits shares the first run's model and version (identical weights). So are
the aliases on them, which it names: a model loaded by alias would otherwise go on loading a deleted
run's weights unsaid.

A run that may be running (RUNNING or STARTING with a driver that lives, or cannot be checked from
here: ``resume_guard.check_not_running``) may at any moment take a stage folder as a cache hit, and
names it in its ledger only after reading it; so while one exists no stage folder is removed at all:
`relay delete` then removes records and MLflow runs only, and `relay gc` nothing.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cli import resume_guard, runs
from orchestrator.cli.common import add_artifact_uri, add_workspace, pipelines_of, store_of, store_option
from orchestrator.cli.preflight import check_run_id
from orchestrator.cli.run_record import moved_workspace, read_run_record
from orchestrator.cli.run_status import run_status
from orchestrator.cli.trials import trial_record
from orchestrator.cli.workspace import check_tracking_store, default_tracking_key
from orchestrator.config import RunSettings, TrackingSettings, resolve_workspace, tracking_uri
from orchestrator.engine.artifacts import TRAIN_DIR, ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, RUNS, read_ledger, record_path
from orchestrator.errors import ArtifactError, ConfigError, InputError, TrackingError
from orchestrator.tracking.common import TAG_KIND, TAG_PIPELINE_RUN, mlflow_client, sqlite_path
from orchestrator.tracking.registrations import TAG_REGISTERED, parsed_entries, recorded_entries

STAGES = "stages"
FINGERPRINT_PREFIX = 16  # how much of a fingerprint names a data-parallel stage's Ray Train folder (train_run_name)
SHOWN_FINGERPRINT = 12  # as the runner's log lines show one
MLFLOW_UNDO = (
    "MLflow runs are marked deleted, not erased: `MLFLOW_TRACKING_URI={uri} mlflow runs restore --run-id ID` brings "
    "one back, and `MLFLOW_TRACKING_URI={uri} mlflow gc` erases the deleted runs and their artifacts for good"
)


@dataclass(frozen=True)
class StageFolder:
    """One stage's folder in the store, with the Ray Train folders of the same fingerprint, and their bytes."""

    fingerprint: str
    stage: str  # the stage's name, from its manifest or a ledger; "" when neither says
    complete: bool  # its manifest exists: the outputs were all written
    size: int
    train_runs: tuple[str, ...] = ()

    def paths(self) -> list[str]:
        return [f"{STAGES}/{self.fingerprint}", *(f"{TRAIN_DIR}/{name}" for name in self.train_runs)]

    def line(self) -> str:
        what = self.stage or "?"
        if not self.complete:
            what += " (incomplete: no manifest, an attempt that did not finish)"
        return f"    {STAGES}/{self.fingerprint[:SHOWN_FINGERPRINT]}…  {what}  {human_size(self.size)}"


@dataclass(frozen=True)
class Ledgers:
    """Every run's ledger as read: the fingerprints each names, the stage names, and the ledgers that cannot be read."""

    by_run: dict[str, frozenset[str]]
    stage_names: dict[str, str]
    unreadable: dict[str, str]  # run id -> why

    def named_by(self, run_ids: Iterable[str]) -> set[str]:
        return {fingerprint for run_id in run_ids for fingerprint in self.by_run.get(run_id, ())}


@dataclass(frozen=True)
class TrackedRuns:
    """A Relay run's MLflow runs (pipeline, generations, stages) in one tracking store, and the versions it registered."""

    uri: str
    runs: list[tuple[str, str]]  # (MLflow run id, run name)
    registered: list[str]  # `models:/NAME/VERSION (ALIAS)`, from the pipeline run's relay.registered_models tag
    note: str = ""  # why none were looked for (no tracking database here)
    already_deleted: int = 0  # its MLflow runs someone marked deleted before (`mlflow runs delete`)
    aliases: list[str] = field(default_factory=list)  # `NAME@ALIAS (version V)` left on a version this run logged


@dataclass
class DeletePlan:
    """What `relay delete` removes, what it keeps and why."""

    run_ids: list[str]
    tracked: dict[str, TrackedRuns] = field(default_factory=dict)
    folders: list[StageFolder] = field(default_factory=list)  # named only by the deleted runs
    shared: dict[str, list[str]] = field(default_factory=dict)  # fingerprint -> the other runs naming it
    held_back: list[str] = field(default_factory=list)  # why no stage folder is removed now
    dependents: list[str] = field(default_factory=list)  # other runs whose config starts from a deleted run's stage


def human_size(size: int) -> str:
    """``1.2 MiB``: bytes in binary units, as `du -h` counts them."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# --- reading the store -------------------------------------------------------------------


def read_ledgers(store: ArtifactStore, run_ids: Iterable[str]) -> Ledgers:
    """The fingerprints every run's ledger names, in any state: a failed or interrupted stage's folder holds
    the in-stage checkpoints its `relay resume` goes on from, so it counts as used as much as a finished one."""
    by_run: dict[str, frozenset[str]] = {}
    names: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for run_id in sorted(run_ids):
        try:
            ledger = read_ledger(store, run_id)
        except ArtifactError as exc:
            unreadable[run_id] = str(exc)
            continue
        if ledger is not None and not isinstance(ledger, dict):
            unreadable[run_id] = f"{record_path(run_id, 'ledger.json')}: not a JSON object"
            continue
        stages = (ledger or {}).get("stages")
        entries = {
            name: entry["fingerprint"]
            for name, entry in (stages.items() if isinstance(stages, dict) else ())
            if isinstance(entry, dict) and isinstance(entry.get("fingerprint"), str)
        }
        by_run[run_id] = frozenset(entries.values())
        names.update({fingerprint: name for name, fingerprint in entries.items()})
    return Ledgers(by_run, names, unreadable)


def stage_folders(store: ArtifactStore, fingerprints: Iterable[str], names: Mapping[str, str]) -> list[StageFolder]:
    """The folders of ``fingerprints`` that exist in the store, with their Ray Train folders and sizes."""
    present = set(store.subfolders(STAGES))
    trains = store.subfolders(TRAIN_DIR)
    found = []
    for fingerprint in sorted(set(fingerprints) & present):
        manifest = store.read_manifest(fingerprint)
        own_trains = tuple(name for name in trains if name[:FINGERPRINT_PREFIX] == fingerprint[:FINGERPRINT_PREFIX])
        size = store.folder_bytes(f"{STAGES}/{fingerprint}")
        size += sum(store.folder_bytes(f"{TRAIN_DIR}/{name}") for name in own_trains)
        stage = manifest.stage if manifest is not None else names.get(fingerprint, "")
        found.append(StageFolder(fingerprint, stage, manifest is not None, size, own_trains))
    return found


def may_be_running(store: ArtifactStore, run_id: str, driver_gone: bool = False, command: str = "gc") -> str | None:
    """Why run ``run_id`` may still be running (resume_guard's refusal, its ways on said for ``command``: "delete"
    when the run itself is to go, "gc" when it holds back removing folders); None when it is not running."""
    if not run_status(store, run_id).is_live:  # a dead driver here reads INTERRUPTED: not running
        return None
    try:
        resume_guard.check_not_running(store, run_id, driver_gone)
    except ConfigError as exc:
        problem = " ".join(exc.problems)
        return for_deletion(problem, run_id) if command == "delete" else for_gc(problem)
    return None


def for_deletion(problem: str, run_id: str) -> str:
    """resume_guard's refusal of a resume, with its ways on said for a deletion (`relay delete ... --driver-gone`)."""
    problem = re.sub(r"if its head is lost, resume it on a new cluster: [^;]*; ", "", problem)
    problem = problem.replace(f"relay resume {run_id}", f"relay delete {run_id}")
    problem = problem.replace("resume here with:", "delete it here with:").replace("resume with:", "delete it with:")
    return problem.replace("then resume", "then delete it")


def for_gc(problem: str) -> str:
    """resume_guard's refusal of a resume, for a run that holds back `relay gc`: once it ends, gc may go on
    (resuming a run whose driver is gone, as the refusal says, settles it too)."""
    return problem.replace("then resume", "then run `relay gc` again")


def live_runs(store: ArtifactStore, run_ids: Iterable[str]) -> list[str]:
    """A sentence for each run that may still be running, and so holds back removing stage folders."""
    return [reason for run_id in sorted(run_ids) if (reason := may_be_running(store, run_id)) is not None]


def held_back(store: ArtifactStore, ledgers: Ledgers, run_ids: Iterable[str]) -> list[str]:
    """Why no stage folder may be removed now: runs among ``run_ids`` that may be running, or whose ledger
    cannot be read (what it names is unknown)."""
    wanted = set(run_ids)
    unreadable = [
        f"the ledger of run {run_id} cannot be read ({why}), so which stage folders it uses is unknown; repair it, "
        f"or delete the run (relay delete {run_id})"
        for run_id, why in sorted(ledgers.unreadable.items())
        if run_id in wanted
    ]
    return live_runs(store, wanted) + unreadable


# --- MLflow ------------------------------------------------------------------------------


def tracking_store_of(args: argparse.Namespace, store: ArtifactStore, run_id: str) -> str:
    """The tracking URI the run wrote to: its record's (a Tune trial's: its sweep's), else the default one."""
    pipelines = pipelines_of(args)
    config = None
    try:
        if store.read_record(record_path(run_id, CONFIG_FILE)) is not None:
            config = read_run_record(store, run_id, pipelines)[1]
        else:
            sweeps = resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
            found = trial_record(sweeps, run_id, pipelines, store)
            config = found[1] if found is not None else None
    except (InputError, OSError):  # a damaged config: the default store, as `relay generations` falls back to
        config = None
    if config is None:
        return tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    moved = moved_workspace(config, store.uri)
    return f"sqlite:///{moved[1] / 'mlflow.db'}" if moved else tracking_uri(config.run, config.tracking)


def tracked_runs(uri: str, run_id: str, key: str) -> TrackedRuns:
    """The MLflow runs (not yet deleted) tagged with the Relay run, in every experiment of the store at ``uri``,
    with the model versions it registered and the aliases left on them.

    The versions are read from the pipeline run's tag even when that run was already deleted in MLflow
    (`mlflow runs delete`): the versions are kept all the same, and the deletion said nothing of them.
    A SQLite store that does not exist holds none, and is not created; a store that cannot be read is
    bad input (``check_tracking_store``), and one that fails while read stops the deletion before anything is removed.
    """
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return TrackedRuns(uri, [], [], note=f"no tracking database at {db}, so no MLflow runs to delete")
    check_tracking_store(uri, key)
    from mlflow.entities import ViewType

    try:
        client = mlflow_client(uri)
        experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        query = f"tags.`{TAG_PIPELINE_RUN}` = '{run_id}'"
        found = _search_all(client, experiments, query) if experiments else []
        gone = _search_all(client, experiments, query, ViewType.DELETED_ONLY) if experiments else []
        registered = list(
            dict.fromkeys(
                entry
                for run in found + gone
                if run.data.tags.get(TAG_KIND) == "pipeline"
                for entry in recorded_entries(run.data.tags.get(TAG_REGISTERED, ""))
            )
        )
        own_runs = {run.info.run_id for run in found + gone}
        aliases = aliases_left(client, registered, own_runs)
    except Exception as exc:  # MLflow raises its own and the driver's errors alike
        raise TrackingError(
            f"could not read the MLflow runs of {run_id} from {uri}: {exc}; nothing was deleted; fix the tracking store"
        ) from exc
    runs_found = [(run.info.run_id, run.info.run_name or "") for run in found]
    return TrackedRuns(uri, runs_found, registered, already_deleted=len(gone), aliases=aliases)


def aliases_left(client: Any, registered: list[str], own_runs: set[str]) -> list[str]:
    """``NAME@ALIAS (version V)`` of each alias on a version that one of ``own_runs`` logged: once those runs are
    deleted, the alias still names the version, whose source run is gone (a version this run only reused, of
    another run's identical weights, keeps its source and is left out)."""
    from mlflow.exceptions import MlflowException

    versions = {(name, version) for name, version, _ in parsed_entries(registered)}
    left = []
    for name in sorted({name for name, _ in versions}):
        try:
            model = client.get_registered_model(name)
        except MlflowException:  # the registered model was deleted by hand: no alias is left
            continue
        for alias, version in sorted(model.aliases.items()):
            version = str(version)
            if (name, version) in versions and client.get_model_version(name, version).run_id in own_runs:
                left.append(f"{name}@{alias} (version {version})")
    return left


def _search_all(client: Any, experiments: list[str], query: str, view: Any = None) -> list[Any]:
    """Every run matching ``query`` in ``view`` (default: the active ones), page by page."""
    from mlflow.entities import ViewType

    found: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiments, query, run_view_type=view or ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


def delete_tracked(tracked: TrackedRuns) -> None:
    """Mark the runs deleted (MLflow's soft delete: `mlflow runs restore` undoes it, `mlflow gc` erases them)."""
    if not tracked.runs:
        return
    client = mlflow_client(tracked.uri)
    for mlflow_run_id, _ in tracked.runs:
        try:
            client.delete_run(mlflow_run_id)
        except Exception as exc:
            raise TrackingError(f"could not mark MLflow run {mlflow_run_id} deleted in {tracked.uri}: {exc}") from exc


# --- relay delete ------------------------------------------------------------------------


def check_known(store: ArtifactStore, run_ids: list[str], known: set[str]) -> None:
    """Refuse (exit 2) an unsafe or unknown run id, naming `relay runs`; every problem at once."""
    for run_id in run_ids:
        check_run_id(run_id)
    unknown = [run_id for run_id in run_ids if run_id not in known]
    if unknown:
        raise ConfigError(
            [
                f"no run {run_id!r} in the artifact store {store.uri}; `relay runs{store_option(store.uri)}` lists its "
                "runs (or pass the store the run wrote to: --workspace, --artifact-uri)"
                for run_id in unknown
            ],
            "the command line",
        )


def check_deletable(store: ArtifactStore, run_ids: list[str], driver_gone: bool) -> None:
    """Refuse (exit 2) to delete a run whose driver may still run it: it would write into what is removed."""
    problems = [
        f"run {run_id} is not deleted: {reason}"
        for run_id in run_ids
        if (reason := may_be_running(store, run_id, driver_gone, "delete")) is not None
    ]
    if problems:
        raise ConfigError(problems, "the command line")


def delete_plan(args: argparse.Namespace, store: ArtifactStore, run_ids: list[str]) -> DeletePlan:
    """What deleting ``run_ids`` removes: checked first (unknown or running runs are refused), nothing written."""
    known = runs.run_ids(store)
    check_known(store, run_ids, known)
    check_deletable(store, run_ids, args.driver_gone)
    others = known - set(run_ids)
    ledgers = read_ledgers(store, known)
    own, theirs = ledgers.named_by(run_ids), ledgers.named_by(others)
    plan = DeletePlan(run_ids, held_back=held_back(store, ledgers, others))
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


def mlflow_part(tracked: TrackedRuns) -> str:
    """What becomes of the run's MLflow runs, counting those someone deleted in MLflow before."""
    if tracked.note:
        return tracked.note
    said = f"{len(tracked.runs)} MLflow run(s) in {tracked.uri} marked deleted"
    if tracked.already_deleted:
        said += f" ({tracked.already_deleted} more already deleted in MLflow)"
    return said


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


def aliases_note(tracked: TrackedRuns) -> str:
    """The aliases left on the deleted run's versions, and how to move or drop one.

    Why: a model loaded by alias (``models:/NAME@newest``) went on loading the weights of a run `relay delete`
    had just removed, and nothing said so. The versions are kept (another run may share them), so the
    aliases are left where they are, for the user to move.
    """
    uri = shlex.quote(tracked.uri)
    return (
        f"aliases stay on versions logged by the MLflow runs this deletes: {', '.join(tracked.aliases)}; point one at "
        f"another run's version with `MLFLOW_TRACKING_URI={uri} python -c \"from mlflow import MlflowClient; "
        "MlflowClient().set_registered_model_alias('NAME', 'ALIAS', VERSION)\"` (the MLflow UI's Models page lists "
        "each version's run), or drop it with delete_registered_model_alias('NAME', 'ALIAS')"
    )


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


def cmd_delete(args: argparse.Namespace) -> int:
    store = store_of(args)
    run_ids = list(dict.fromkeys(args.run_ids))
    plan = delete_plan(args, store, run_ids)
    print_delete_plan(store, plan, "will remove" if not args.yes else "removes")
    if not confirmed(args):
        print("nothing deleted")
        return 0
    if not args.yes:  # the answer took a while: what a run started meanwhile uses is kept
        agreed = {folder.fingerprint for folder in plan.folders}
        plan = delete_plan(args, store, run_ids)
        plan.folders = [folder for folder in plan.folders if folder.fingerprint in agreed]
    return carry_out(store, plan)


def carry_out(store: ArtifactStore, plan: DeletePlan) -> int:
    """MLflow first (undoable), then the records, then the stage folders: a deletion cut off half way leaves
    orphan folders, which `relay gc` finds, never a record whose outputs are gone."""
    for run_id in plan.run_ids:
        delete_tracked(plan.tracked[run_id])
        store.delete_folder(f"{RUNS}/{run_id}")
        tracked = plan.tracked[run_id]
        print(f"deleted run {run_id}: its record and {len(tracked.runs)} MLflow run(s)")
    folders = [] if plan.held_back else plan.folders
    for folder in folders:
        for path in folder.paths():
            store.delete_folder(path)
    print(f"removed {len(folders)} stage folder(s), {human_size(_total(folders))} freed")
    for uri in sorted({tracked.uri for tracked in plan.tracked.values() if tracked.runs}):
        print(MLFLOW_UNDO.format(uri=shlex.quote(uri)))
    return 0


# --- relay gc ----------------------------------------------------------------------------


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
        "delete runs: their record, their MLflow runs (marked deleted) and the stage outputs no other run uses; "
        "asks first on a terminal"
    )
    parser = commands.add_parser("delete", help=about, description=about)
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="the runs to delete (`relay runs` lists them)")
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
