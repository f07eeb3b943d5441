"""`relay ui`: an MLflow UI over the tracking store of the newest run `relay runs` lists (the one its record names,
else the workspace's); the checks before reading a tracking store.

`relay generations` reads the tracking store a run or the workspace names; MLflow meets a bad one
with a traceback (a file that is no database, an unknown scheme) or minutes of retries (a server
that does not answer), so it is checked here first, and a bad one is bad input (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from orchestrator import ui
from orchestrator.cli.common import add_workspace, store_of
from orchestrator.cli.preflight import file_not_folder_problem, tracking_uri_problem
from orchestrator.cli.records.newest_run import check_tracked, newest_run_experiment
from orchestrator.cli.records.run_status import alive, run_status
from orchestrator.cli.records.runs import run_ids
from orchestrator.cli.records.trials import trial_sweep
from orchestrator.cli.run.run_locations import tracking_problem
from orchestrator.config import TRACKING_URI_ENV, WORKSPACE_ENV, RunSettings, TrackingSettings, tracking_uri
from orchestrator.engine.ledger import RunStatus
from orchestrator.errors import ConfigError
from orchestrator.tracking.interruptions import close_interrupted
from orchestrator.tracking.sweeps import ClosedSweep, close_dead_sweeps

log = logging.getLogger("relay")
DEFAULT_UI_PORT = 5000


def cmd_ui(args: argparse.Namespace) -> int:
    """Check first (port, runs), then serve the newest run's tracking store until Ctrl-C: the one its record names
    when that is not the default one and can be read here (said so), else the default one
    ($MLFLOW_TRACKING_URI, else the workspace's; ``newest_run.newest_run_experiment``)."""
    named_a_file = args.workspace and file_not_folder_problem(
        Path(args.workspace).expanduser().absolute(), "--workspace"
    )
    if named_a_file:  # said so, not "no runs yet" and a `relay run` hint that would fail the same way
        raise ConfigError([named_a_file], "the command line")
    newest = newest_run_experiment(args)  # the newest run `relay runs` lists: its store and experiment
    uri = newest.tracking_uri or tracking_uri(RunSettings(workspace=args.workspace), TrackingSettings())
    key = newest.tracking_key if newest.tracking_uri else default_tracking_key(args.workspace)
    check_tracking_store(uri, key)  # a server that does not answer: at once
    check_tracked(args, uri, None)
    experiment, note = (args.experiment, None) if args.experiment else (newest.name, newest.note)
    port = DEFAULT_UI_PORT if args.port is None else args.port
    url = ui.check(uri, experiment, port)
    close_interrupted_runs(args, uri)
    for line in (note, newest.tracking_uri and f"Tracking store: {uri}, from {key}"):
        if line:
            print(line, flush=True)
    if ui.is_server(uri):  # the server's own UI: nothing is started here
        print(f"MLflow UI (the tracking server's own): {url}", flush=True)
        if args.port is not None:
            print(unused_port_note(args.port, uri, key), flush=True)
        return ui.run_server(uri, port)
    print("MLflow UI: starting ...", flush=True)
    return ui.run_server(uri, port, ready_line=f"MLflow UI: {url}  (Ctrl-C to stop)")


def unused_port_note(port: int, uri: str, key: str = f"${TRACKING_URI_ENV}") -> str:
    """Why --port changed nothing: the tracking server serves its own UI, so `relay ui` starts no server.

    Why: the port was dropped without a word, and the printed URL was not on the port asked for. ``key``: the
    setting that named the server.
    """
    return f"--port {port} is not used: the tracking server at {uri} ({key}) serves its own UI, so relay ui starts none"


def close_interrupted_runs(args: argparse.Namespace, uri: str) -> None:
    """Before the UI shows them: the MLflow runs of runs whose driver died (INTERRUPTED in `relay runs`) end KILLED,
    as do sweeps whose driver on this machine died, with every run still open under them (``close_dead_sweeps``).
    A trial is said to go on with `relay tune CONFIG --resume`: `relay resume` refuses a trial of a sweep.

    Only runs whose driver ran on this machine can be known dead (``run_status.run_status``); a driver
    elsewhere may be alive. A workspace whose run records cannot be read still gets its UI.
    """
    try:
        store = store_of(args)
    except ConfigError as exc:
        log.info("not checking for interrupted runs: %s", exc)
        return
    interrupted = sorted(run for run in run_ids(store) if run_status(store, run) is RunStatus.INTERRUPTED)
    experiment = args.experiment or TrackingSettings().experiment
    closed = close_interrupted(uri, experiment, interrupted)
    trials = [run for run in closed if trial_sweep(store, run)]
    runs = [run for run in closed if run not in trials]
    if runs:
        print(
            f"Marked KILLED in MLflow (their driver died; `relay resume RUN_ID` goes on): {', '.join(runs)}", flush=True
        )
    if trials:
        print(
            f"Marked KILLED in MLflow (trials whose sweep's driver died; `{SWEEP_GOES_ON}` goes on): {', '.join(trials)}",
            flush=True,
        )
    for sweep in close_dead_sweeps(uri, experiment, alive):
        print(dead_sweep_line(sweep), flush=True)


SWEEP_GOES_ON = "relay tune CONFIG --resume"  # what continues a sweep and its trials (`relay resume` refuses a trial)


def dead_sweep_line(sweep: ClosedSweep) -> str:
    """What `relay ui` says of a sweep whose driver died: its name and the trials it closed with it, if any.

    Why the trials are named: a trial killed just after it started has no ledger, so `relay runs`
    does not list it, and its MLflow run was closed only here.
    """
    line = f"Marked KILLED in MLflow (the sweep's driver died; `{SWEEP_GOES_ON}` goes on): {sweep.name}"
    if sweep.trials:
        line += f", with its open trial(s): {', '.join(sweep.trials)}"
    return line


def register(commands: Any) -> None:
    about = "start an MLflow UI on 127.0.0.1 for the workspace"
    parser = commands.add_parser("ui", help=about, description=about)
    parser.add_argument(
        "--port",
        type=int,
        help=f"port on 127.0.0.1 to serve on (default: {DEFAULT_UI_PORT}; not used with a tracking server, "
        "which serves its own UI)",
    )
    parser.add_argument(
        "--experiment",
        help="the MLflow experiment whose newest run the URL opens (default: that of the newest run `relay runs` lists)",
    )
    add_workspace(parser)
    parser.set_defaults(handler=cmd_ui)


def check_tracking_store(uri: str, key: str) -> None:
    """Refuse (exit 2) a tracking store MLflow cannot read: its form, a file that is no database, no server there.

    ``key`` names the setting that chose ``uri`` (`--workspace`, `$MLFLOW_TRACKING_URI`, a run's
    `tracking.uri`), so the message says what to change.
    """
    problem = tracking_uri_problem(uri, key, writes=False) or tracking_problem(uri)
    if problem:
        raise ConfigError([problem], "the command line")


def default_tracking_key(workspace: str | None) -> str:
    """The setting that names the default tracking store: $MLFLOW_TRACKING_URI, else how the workspace was named."""
    if os.environ.get(TRACKING_URI_ENV):
        return f"${TRACKING_URI_ENV}"
    if workspace:
        return "--workspace"
    return f"${WORKSPACE_ENV}" if os.environ.get(WORKSPACE_ENV) else "the default workspace (./relay-workspace)"
