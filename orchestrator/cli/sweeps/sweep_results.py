"""What a sweep writes and says when it ends: trials.csv/json, best.yaml and its header, and the way on.

An interrupted sweep says how to continue it (``resume_command``), a finished one how to run its
best config (``run_best_command``), with the store settings and the cluster the sweep used. Apart
from ``tune`` (the command), which calls these once Ray Tune returns or is interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli.common import EXIT_FAILED, EXIT_INTERRUPTED
from orchestrator.cli.run import run_locations
from orchestrator.cli.sweeps.sweep_folder import (
    STORE_ENVS,
    SUBMITTED_RESUME_ENV,
    SUBMITTED_START_ENV,
    SWEEP_CONFIG,
    SWEEP_STORES,
    saved_stores,
)
from orchestrator.config import ARTIFACT_URI_ENV, TRACKING_URI_ENV
from orchestrator.engine.ledger import JOB_ADDRESS_ENV
from orchestrator.tracking.sweeps import SweepTracker
from orchestrator.tune.plan import SweepPlan
from orchestrator.tune.space import best_config

TIE_RULE = "a tie goes to the trial Ray Tune numbered first"  # its trial number: trials that start together may start in another order


def best_notes(plan: SweepPlan) -> list[str]:
    """Lines under the table: how Relay picks its best trial (Ray Tune's status box may name another), and for PBT
    what best.yaml can and cannot reproduce."""
    notes = [
        f"* = Relay's best: among the trials that reached the furthest generation, the best final "
        f'{plan.settings.metric} ({plan.settings.mode}); Ray Tune\'s "best trial" above compares last reported '
        "values whatever the generation, so it may name a trial stopped early; the trials are listed in Ray Tune's "
        f"trial order (their number), and {TIE_RULE}"
    ]
    note = pbt_note(plan)
    if note:
        notes.append(note)
    return notes


def pbt_note(plan: SweepPlan) -> str | None:
    """Under PBT a trial's values change between generations; best.yaml can hold only one set."""
    if not plan.settings.population_based:
        return None
    return (
        f"best.yaml carries the best trial's final values only; {plan.settings.scheduler} may have changed them "
        "between generations (an exploit copies a better trial and perturbs its values), and a run of best.yaml "
        "trains every generation with the final ones, so its score can differ from the trial's"
    )


def interrupted_before_trials(args: argparse.Namespace, plan: SweepPlan, resumable: bool) -> None:
    """Ctrl-C before Ray Tune saved any state (while Ray started): say how to go on, and leave a folder that allows it.

    A new sweep's folder then holds only the sweep-config.yaml written here, which neither
    `--resume` (no state) nor a new start (a folder that is not empty) would take.
    """
    if resumable:
        print(f"\nsweep interrupted; continue it with: {resume_command(args)}", flush=True)
        return
    if not args.resume:
        (Path(plan.output) / SWEEP_CONFIG).unlink(missing_ok=True)
        (Path(plan.output) / SWEEP_STORES).unlink(missing_ok=True)
    print(f"\nsweep interrupted before any trial started; start it again with: {_again(args)}", flush=True)


def failed_way_on(args: argparse.Namespace, plan: SweepPlan, resumable: bool) -> str:
    """What a sweep Ray Tune stopped with an error of its own leaves, and the command that goes on from it.

    Ray Tune saved its state (``resumable``): `--resume` goes on from it, its finished trials not rerun. It saved
    none (it stopped as it set up): the same command starts the sweep again in the same folder (``never_started``).
    """
    if resumable:
        return f"its state is saved in {plan.experiment_path}; once the cause is fixed, continue it with: {resume_command(args)}"
    return (
        f"Ray Tune saved no state of it, so there is nothing to resume; once the cause is fixed, start it again "
        f"with: {_again(args)}"
    )


def unwritten_results(args: argparse.Namespace, plan: SweepPlan, exc: OSError) -> str:
    """Why a sweep whose trials ended has no trials.csv/json or best.yaml, and the command that writes them.

    Why: a full disk (or a folder no longer writable) as the sweep wrote its tables ended it in a Python
    traceback, after every trial had run. Ray Tune's state holds the trials' results, and `--resume`
    of the sweep reruns no trial that ended: it writes the tables again.
    """
    return (
        f"sweep {plan.name}: its trials ended, but its results could not be written in {plan.output} "
        f"({type(exc).__name__}: {exc}); Ray Tune's state in {plan.experiment_path} keeps them: once the cause is "
        f"fixed (room on the disk, a folder you can write in), write them, running no trial again, with: "
        f"{resume_command(args)}"
    )


def terminated(args: argparse.Namespace, plan: SweepPlan, sweeps: SweepTracker) -> None:
    """A sweep ended by SIGTERM: its open trials and its own run KILLED in MLflow (not FAILED, RUNNING), and the way on.

    Why: `relay stop sweep-NAME` left the sweep's run FAILED and its trials' runs RUNNING, and the job's
    log ended mid-table without a word; Ray Tune saved its state, so the sweep continues from there.
    """
    sweeps.finish("KILLED", {}, {}, [])  # its open trials were closed before Ray shut down (``sweep.run_sweep``)
    print(f"\nsweep terminated (SIGTERM); continue it with: {resume_command(args)}", flush=True)


def _again(args: argparse.Namespace) -> str:
    """The command that runs this sweep again (add --resume to continue it), each argument quoted for a shell.

    Why quoted: an override such as `tune.space.model.name={choice: [a, b]}` holds spaces and braces,
    and the line printed without quotes failed when pasted. Why ``--address``: the sweep's cluster
    (``_with_address``); the line without it was pasted and ran the rest of the sweep on this machine.
    In a sweep's job (`relay submit FILE --tune`) it is the submit line that started the job: the job's
    `relay tune` reads a copy of the file in a folder of the cluster's, which the user never saw.
    """
    if run_locations.in_ray_job() and os.environ.get(SUBMITTED_START_ENV):
        return os.environ[SUBMITTED_START_ENV]
    output = ["--output", args.output] if args.output else []
    address = ["--address", args.address] if getattr(args, "address", None) else []
    stores = [f"{name}={shlex.quote(os.environ[name])}" for name in STORE_ENVS if os.environ.get(name)]
    return " ".join([*stores, shlex.join(["relay", "tune", args.config, *args.overrides, *output, *address])])


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this sweep where it was interrupted.

    In a sweep's job (`relay submit FILE --tune`) it is the `relay submit ... --resume-sweep` line the
    submit gave the job: a `relay tune --resume` pasted on the user's machine would drive the rest from there.
    """
    submitted = os.environ.get(SUBMITTED_RESUME_ENV) if run_locations.in_ray_job() else None
    return submitted or f"{_again(args)} --resume"


def interrupted_line(args: argparse.Namespace, rows: Sequence[Any], trials: int) -> str:
    """best.yaml's header line for a sweep cut off before all its trials ended: how many did, and how to go on.

    Why: an interrupted sweep's best.yaml named its best trial as a finished sweep's does, and
    nothing in it said the sweep was unfinished, so its best was read as the sweep's.
    """
    ended = sum(1 for row in rows if row.status not in ("interrupted", "unfinished"))
    return f"sweep interrupted after {ended} of {trials} trials; continue it with: {resume_command(args)}"


def sweep_status(done: bool, scored: bool) -> str:
    """The sweep run's MLflow status: KILLED when interrupted, FAILED when no trial reported the metric."""
    if not done:
        return "KILLED"
    return "FINISHED" if scored else "FAILED"


def print_ending(args: argparse.Namespace, plan: SweepPlan, done: bool, scored: bool) -> int:
    """How to continue an interrupted sweep, or how to run the best config; the exit code.

    A sweep none of whose trials reported the metric (or none that did and did not fail) has no best.yaml:
    it failed (exit 1), and says
    where each trial's error is. One interrupted before any scored trial ended has none yet either
    (``trials_table.best_row``), and says so beside the way on.
    """
    if not done:
        unscored = "" if scored else " before any trial finished with a score, so there is no best.yaml yet"
        print(f"\nsweep interrupted{unscored}; continue it with: {resume_command(args)}")
        return EXIT_INTERRUPTED  # trials left unfinished: Ctrl-C (errors end a trial, they do not leave it open)
    if not scored:
        print(
            f"\nno trial reported {plan.settings.metric} and ended without an error, so there is no best config; "
            "each trial's error is in its "
            f"error.txt under {plan.experiment_path}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    best_yaml = Path(plan.output) / "best.yaml"
    print(f"\nBest config: {best_yaml}  (run it with: {run_best_command(best_yaml, plan)})")
    return 0


def write_sweep_outputs(
    output: Path,
    records: list[dict[str, Any]],
    best: Any,
    plan: SweepPlan,
    tied: Sequence[str] = (),
    unfinished: str | None = None,
) -> list[str]:
    """trials.csv / trials.json always; best.yaml (base config + best values, no tune section) when there is a best.

    ``tied``: the trials that scored as the best one did; best.yaml's header names them and the rule
    that chose (it claimed a tie under every sweep). ``unfinished``: the line that says the sweep was
    interrupted and how to continue it (``interrupted_line``), for its header; None for a sweep that ended.
    """
    output.mkdir(parents=True, exist_ok=True)
    (output / "trials.json").write_text(json.dumps(records, indent=2, default=str))
    columns = list(dict.fromkeys(key for record in records for key in record))
    with (output / "trials.csv").open("w", newline="") as handle:  # csv quotes a value holding commas (a list)
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(records)
    files = [str(output / "trials.csv"), str(output / "trials.json")]
    if best is not None:
        data = best_config(plan.base, best.values)  # the file the trials ran from (overrides, pins)
        note = pbt_note(plan)
        tie = f" (tied with {', '.join(tied)}; {TIE_RULE})" if tied else ""
        (output / "best.yaml").write_text(
            f"# {run_best_command(output / 'best.yaml', plan, data)}\n# best trial {best.trial_id} of sweep "
            f"{plan.name}{tie}\n"
            + (f"# {unfinished}\n" if unfinished else "")
            + (f"# {note}\n" if note else "")
            + yaml.safe_dump(data, sort_keys=False)
        )
        files.append(str(output / "best.yaml"))
    return files


def run_best_command(best_yaml: Path, plan: SweepPlan, data: Mapping[str, Any] | None = None) -> str:
    """`relay run best.yaml`, after the store settings the sweep took from the shell that best.yaml does not hold.

    best.yaml pins the workspace (``best_config``) but not the stores: a sweep tracked to a server
    through MLFLOW_TRACKING_URI (or its records in RELAY_ARTIFACT_URI) printed a bare `relay run
    best.yaml`, which tracked into a new sqlite file in the workspace instead of the sweep's server.
    A sweep that ran on a cluster (``SWEEP_STORES`` records its address) names it with `--address`: the
    line without it started a local Ray instance on this machine. A sweep that ran as a job (`relay submit
    --tune`) names `relay submit` to the cluster it was sent to: its best config is a job there too.
    """
    data = best_config(plan.base, {}) if data is None else data
    run = data.get("run") or {}
    workspace = Path(str(run.get("workspace")))
    tracking = (data.get("tracking") or {}).get("uri")
    shell = []
    if not run.get("artifact_uri") and plan.store_uri != str(workspace / "artifacts"):
        shell.append(f"{ARTIFACT_URI_ENV}={shlex.quote(plan.store_uri)}")
    if not tracking and plan.tracking_uri != f"sqlite:///{workspace / 'mlflow.db'}":
        shell.append(f"{TRACKING_URI_ENV}={shlex.quote(plan.tracking_uri)}")
    job_address = os.environ.get(JOB_ADDRESS_ENV) if run_locations.in_ray_job() else None
    if job_address:
        return " ".join([*shell, shlex.join(["relay", "submit", str(best_yaml), "--address", job_address])])
    address = saved_stores(Path(plan.output)).get("ray_address")
    cluster = ["--address", address] if isinstance(address, str) and address else []
    return " ".join([*shell, shlex.join(["relay", "run", str(best_yaml), *cluster])])
