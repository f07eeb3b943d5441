"""What every command shares: exit codes, the common flags, the artifact store a command reads, run ids.

The plumbing of argparse and of the places a command names (--workspace, --artifact-uri, --address),
apart from what the commands read: a pipeline file (``pipeline_files``), a run's record (``run_record``).
The CLI names no algorithm: pipelines come from the ``relay.pipelines`` entry points
(``installed_pipelines``) unless the caller hands ``main`` its own mapping (``pipelines_of``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import time
from collections.abc import Mapping
from pathlib import Path

from orchestrator.cli.installed_pipelines import installed_pipelines
from orchestrator.cli.preflight import first_closed, folder_problem, open_store
from orchestrator.cli.run.run_locations import local_path, store_problem
from orchestrator.config import ARTIFACT_URI_ENV, WORKSPACE_ENV, RunSettings, artifact_uri
from orchestrator.config.values import ray_address_problem
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import RUNS
from orchestrator.engine.signals import EXIT_INTERRUPTED as EXIT_INTERRUPTED  # the code `relay` ends with on Ctrl-C
from orchestrator.errors import ConfigError
from orchestrator.registry import PipelineSpec

Pipelines = Mapping[str, PipelineSpec]
EXIT_FAILED, EXIT_BAD_INPUT = 1, 2


def pipelines_of(args: argparse.Namespace) -> Pipelines:
    """The pipelines ``main`` was given, else every one the installed entry points declare (``installed_pipelines``)."""
    given = getattr(args, "pipelines", None)
    return given if given is not None else installed_pipelines()


def store_option(store_uri: str) -> str:
    """How a printed command (`relay resume`, `relay generations`) names the run's artifact store:
    nothing where that command would open this store anyway, else `` --artifact-uri URI``."""
    return "" if store_uri == artifact_uri(RunSettings()) else f" --artifact-uri {shlex.quote(store_uri)}"


def new_run_id(name: str) -> str:
    """``NAME-DATE-TIME-XXXX``: the run's one id (Relay's run, the Ray job's submission id, the MLflow run name)."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def store_of(args: argparse.Namespace) -> ArtifactStore:
    """The artifact store a command reads run records from: --artifact-uri, else the workspace's default.

    A local store that is a file, or lies under one, is bad input: pyarrow would report "Not a
    directory" at the first read, and a listing would find no runs there and say so. So is a
    remote store that does not answer (probed for at most ``PROBE_TIMEOUT_S``, as `relay run`
    does): a listing of an unreachable S3 endpoint came back empty ("no runs yet"), and one of a
    GCS bucket hung for minutes.
    """
    given = getattr(args, "artifact_uri", None)
    uri = given or artifact_uri(RunSettings(workspace=getattr(args, "workspace", None)))
    folder = local_path(uri)
    problem = local_store_problem(Path(folder).expanduser(), store_named_by(args)) if folder is not None else None
    if problem:
        raise ConfigError([problem], "the command line")
    problem = store_problem(uri, key=store_named_by(args)) if folder is None else None
    if problem:
        raise ConfigError([problem], "the command line")
    return open_store(uri, store_named_by(args), "the command line")


def local_store_problem(folder: Path, key: str) -> str | None:
    """Why a command cannot read the local store ``folder`` (named by ``key``); None when it can, or it is not there.

    A file, or a folder under one, is ``folder_problem``'s. So is a store this user may not read: the
    folder itself, a folder above it, or a folder in it (runs/, stages/), or a run's record in runs/
    (``first_closed_record``). Why: a workspace of another user (chmod 700) ended every reading command in a
    PermissionError traceback, and a runs/ folder not readable read as a store with no runs, whose stage
    outputs `relay gc` then removed as named by none; one run's record this user may not read failed
    `relay resume`, `generations`, `runs` and `delete` with exit 1 and no fix.
    """
    try:
        if not folder.is_dir():
            return folder_problem(folder, key)
        unreadable = first_closed(folder, os.R_OK | os.X_OK) or first_closed_record(folder / RUNS)
    except OSError:  # a folder on its path this user may not enter: even stat is refused
        unreadable = next((path for path in reversed(folder.parents) if not os.access(path, os.X_OK)), folder)
    if unreadable is not None:
        return (
            f"{key}: cannot read the artifact store {folder}: this user may not read {unreadable}; give it read "
            f"access (chmod -R u+rX {unreadable}), or point {key} at another store"
        )
    if (folder / RUNS).exists() and not (folder / RUNS).is_dir():
        return (
            f"{key}: the artifact store {folder} is damaged: {folder / RUNS}, where it keeps the run records, is a "
            f"file; move that file away, or point {key} at another store"
        )
    return None


def first_closed_record(runs: Path) -> Path | None:
    """The first run folder in ``runs``, or file in one, this user may not read; None when it may read them all."""
    if not runs.is_dir():
        return None
    for record in runs.iterdir():
        if record.is_dir():
            if not os.access(record, os.R_OK | os.X_OK):
                return record
            closed = next((path for path in record.iterdir() if not os.access(path, os.R_OK)), None)
            if closed is not None:
                return closed
    return None


def store_named_by(args: argparse.Namespace) -> str:
    """How the user named the store, for messages: the flag or variable that set it."""
    if getattr(args, "artifact_uri", None):
        return "--artifact-uri"
    if os.environ.get(ARTIFACT_URI_ENV):
        return f"${ARTIFACT_URI_ENV}"
    if getattr(args, "workspace", None):
        return "--workspace"
    return f"${WORKSPACE_ENV}" if os.environ.get(WORKSPACE_ENV) else "the default workspace (./relay-workspace)"


def cluster_address(address: str | None) -> str | None:
    """``--address`` as ray.init takes it (HOST:PORT), checked for form; a dashboard URL is refused.

    Whether a cluster answers there is checked with the run's other settings
    (``cluster_fit.check_cluster``).
    """
    if address is None:
        return None
    problem = ray_address_problem(address, "--address")
    if problem:
        raise ConfigError([problem], "the command line")
    return address


def add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", help="workspace folder (default: $RELAY_WORKSPACE or ./relay-workspace)")


def add_location_overrides(parser: argparse.ArgumentParser) -> None:
    """``--workspace`` / ``--artifact-uri`` on a command that reads a pipeline file: the overrides ``run.workspace=``
    / ``run.artifact_uri=`` under the names the other commands give them (``locations_as_overrides``).

    Why: `relay resume`, `relay runs`, `relay generations` and `relay submit` take these flags, and `relay run`
    ends by printing them; `relay run CONFIG --workspace DIR` (and `relay tune`'s) was an unrecognised argument.
    """
    parser.add_argument("--workspace", help="the workspace folder: the same as the override run.workspace=DIR")
    parser.add_argument(
        "--artifact-uri", help="the artifact store (s3://BUCKET/PREFIX or a folder): the same as run.artifact_uri=URI"
    )
    parser.set_defaults(locations_as_overrides=True)


def locations_as_overrides(args: argparse.Namespace) -> None:
    """Add ``--workspace`` / ``--artifact-uri`` to ``args.overrides`` as the config keys they stand for (last: they
    win over the file, as any override does, and a problem with them names the override).

    A flag beside the override of its own key is refused (exit 2) naming both as typed: the check of keys
    given twice named an override `run.workspace=` the user never wrote, in the reverse order.
    """
    flags = (
        ("run.workspace", "--workspace", args.workspace),
        ("run.artifact_uri", "--artifact-uri", args.artifact_uri),
    )
    twice = [
        f"{flag}: given beside the override {given}, which sets the same key; keep one of them"
        for key, flag, value in flags
        if value is not None
        for given in args.overrides
        if given.partition("=")[0].strip() == key
    ]
    if twice:
        raise ConfigError(twice, "the command line")
    args.overrides = [*args.overrides, *(f"{key}={value}" for key, _, value in flags if value is not None)]


def add_artifact_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifact-uri",
        help="artifact store holding the run records, e.g. s3://BUCKET/PREFIX "
        "(default: $RELAY_ARTIFACT_URI, else the workspace's artifacts/)",
    )


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray dashboard address, e.g. http://HOST:8265 (default: $RAY_ADDRESS)")


def add_cluster_address(parser: argparse.ArgumentParser, resume: bool = False) -> None:
    default = (
        "default: the cluster the run joined (its record, or run.ray_address), else $RAY_ADDRESS, else a new local Ray "
        "instance; `local` starts one whatever the record says"
        if resume
        else "default: run.ray_address, else $RAY_ADDRESS (set inside a Ray job), else a new local Ray instance of its own"
    )
    parser.add_argument(
        "--address",
        help=f"join this Ray cluster as its driver (the GCS address HOST:6379, as `ray status` prints it); {default}",
    )
