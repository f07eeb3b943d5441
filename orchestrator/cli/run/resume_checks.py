"""What `relay resume` refuses (exit 2) before it takes a run over, and the cluster it finishes the run on.

A sweep's trial, a workspace moved or copied since the run started, changed data or weights, a finished
run's --stop-after: each refused with the way on; the cluster is the one the run's record says it joined.

Apart from ``resume_guard`` (whether another driver may still run it, and the claim on it): these
compare the run's record with the world as it is now, and say the way on.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from typing import Any

from orchestrator.cli.config_checks import data_problems, dotted_value
from orchestrator.cli.records.trials import trial_resume_problem
from orchestrator.cli.run import cluster_join, resume_guard, run_locations
from orchestrator.cli.run.run_record import moved_workspace, readable_ledger, recorded_ray_address, relocated_workspace
from orchestrator.config import RunSettings, resolve_workspace
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import RunStatus
from orchestrator.engine.store_faults import store_fault
from orchestrator.errors import ConfigError
from orchestrator.registry import PipelineSpec

log = logging.getLogger("relay")

RESUME_DATA_FIX = "Put the data back as it was to resume, or start a new run on the data as it is now (`relay run`)"
# A preflight problem of `init.` (the `init.source` weights a run starts from) is about weights, not data.
INIT_KEYS = "init."
RESUME_WEIGHTS_FIX = (
    "Put back the weights the run was planned with to resume, or start a new run with the weights as they are "
    "now (`relay run`)"
)


def check_data_unchanged(spec: PipelineSpec, config: Any, run_id: str, source: str) -> None:
    """Refuse (exit 2) to resume a run whose data is gone or is no longer the data it started on.

    Why: `relay run` pinned what the config names by location (a folder's listing digest, a
    sharded dataset's digest: ``DataSpec.pins``), and the finished stages are cached under those
    pins. A resume reading changed data under the old pins would train the later generations on
    other images than the earlier ones, and the run's record would say they were the same.
    A pin filling a value the record left empty (a record older than that pin) is no change.
    Data the preflight refuses is said the same way (``_changed_data``): its advice is for a new
    config, which a resume, running the run's own, cannot take.
    """
    problems = [
        problem if _storage_problem(problem) else _changed_data(problem, run_id)
        for problem in data_problems(spec, config)
    ]
    if not problems and spec.data is not None:
        problems = [
            f"{key}: the data changed since run {run_id} started ({key} was {str(old)[:16]}, is now "
            f"{str(now)[:16]}); its finished stages read the old data, so resuming would mix the two. {RESUME_DATA_FIX}"
            for key, now in spec.data.pins(config).items()
            if (old := dotted_value(config, key)) is not None and old != now
        ]
    if problems:
        raise ConfigError(problems, source)


def _storage_problem(problem: str) -> bool:
    """Whether a preflight problem is the data's storage refusing or not answering: no change of the data, and
    fixed on this machine (credentials, network) before a resume, so said as the preflight says it."""
    return store_fault(ValueError(problem)) is not None or "cannot reach this storage" in problem


def _changed_data(problem: str, run_id: str) -> str:
    """A preflight problem met on resume, as what it is there: the data changed (or went) since the run started.

    The preflight's advice ("Set head_count to at most 24", "update data.digest") changes the
    config, and a resume runs the config the run started with, which passed this check then. So
    the advice, the message's last sentence (or its last clause after "; " when it has one
    sentence), is replaced by the one that applies: put the data back, or start a new run. A problem of
    `init.` is said of the weights the run starts from (`init.source`), which are not its data.
    """
    key, _, message = problem.partition(": ")
    sentence = message.rfind(". ")
    if sentence > 0 and message[sentence + 2 : sentence + 3].isupper():
        finding = message[:sentence]
    else:
        finding = message.rpartition("; ")[0] or message
    if key.startswith(INIT_KEYS):
        changed, fix = f"the weights changed since run {run_id} started, or are gone", RESUME_WEIGHTS_FIX
    else:
        changed, fix = f"the data changed since run {run_id} started, or is gone", RESUME_DATA_FIX
    return (
        f"{key}: {changed}: {finding.rstrip('.')}. "
        f"Its config passed this check when it started, and a resume cannot change it. {fix}"
    )


def check_resume_stop_after(store: ArtifactStore, run_id: str, stop_after: str | None) -> None:
    """Refuse (exit 2) `relay resume RUN --stop-after STAGE` of a run that has finished.

    Why: the resumed attempt would end at that stage and record the finished run as stopped,
    its MLflow runs KILLED. A run that has not finished may stop after a stage it has done (the
    resume checks that stage's outputs and recomputes a damaged one); the stages it did later
    stay in its ledger (``Ledger.write``).
    """
    if stop_after is None or readable_ledger(store, run_id).get("status") != RunStatus.FINISHED:
        return
    raise ConfigError(
        [
            f"--stop-after: run {run_id} has finished, so stopping it after {stop_after} would record it as stopped "
            f"again; resume it without --stop-after (its outputs are checked, and a damaged one recomputed)"
        ],
        "the command line",
    )


def check_not_a_trial(args: argparse.Namespace, store: ArtifactStore) -> None:
    """Refuse (exit 2) to resume a sweep's trial, saying what it is and its way on (``trials.trial_resume_problem``).

    Why: a trial keeps no config of its own, so the resume said there was no such run, though `relay runs` lists it.
    """
    sweeps = resolve_workspace(RunSettings(workspace=getattr(args, "workspace", None))) / "tune"
    given = (("--workspace", getattr(args, "workspace", None)), ("--artifact-uri", getattr(args, "artifact_uri", None)))
    options = "".join(f" {flag} {shlex.quote(value)}" for flag, value in given if value)
    problem = trial_resume_problem(store, args.run_id, sweeps, options)
    if problem is not None:
        raise ConfigError([problem], "the command line")


def resume_address(
    given: str | None, store: ArtifactStore, run_id: str, settings: RunSettings | None = None
) -> str | None:
    """The cluster a resume joins: `--address`, else the one the run's record says it joined (checked to
    answer: exit 2 naming it and how to finish elsewhere), else None (``make_executor`` decides from
    ``settings``, the run's: RAY_ADDRESS holding a dashboard URL is refused here, with a resume's ways on).

    Inside a Ray job (`relay submit --resume`) the job's own cluster, whatever the record says.
    """
    if given is not None or run_locations.in_ray_job():
        return given
    settings = settings or RunSettings()
    recorded = recorded_ray_address(store, run_id)
    job = resume_guard.recorded_job(store, run_id)
    if recorded is None:
        job_address = None if not job else job.get("job_address", "")
        cluster_join.check_resume_ray_address(settings, run_id, job_address)
    if recorded is None and job:
        log.info(
            "run %s ran as a cluster job: resuming it %s; to resume it on its cluster:%s",
            run_id,
            cluster_join.resume_place(settings),
            resume_guard.cluster_job_hint(store, run_id).removeprefix(" (a cluster job:").removesuffix(")"),
        )
    if recorded is not None:
        cluster_join.check_recorded_cluster(recorded, run_id)
        log.info(
            "run %s joined the Ray cluster at %s: resuming there (pass --address HOST:PORT or --address local to "
            "run elsewhere)",
            run_id,
            recorded,
        )
    return recorded


def check_not_moved(config: Any, store_uri: str, run_id: str) -> None:
    """Refuse (exit 2) to resume a run in a workspace moved or copied since it started.

    MLflow keeps absolute paths in mlflow.db (each experiment's artifact location), so a resume
    in the new place would write the run's MLflow artifacts under the old one, creating it again;
    in a copy, the stages would land in the copy and the tracking in the original.
    """
    relocated = relocated_workspace(config, store_uri)
    if relocated is None:
        return
    old, new = relocated
    if moved_workspace(config, store_uri) is None:  # the old place is still there: a copy
        problem = (
            f"run {run_id} started in workspace {old}; {new} holds a copy of its record, which (like MLflow's "
            f"database) points at {old}, so resuming here would write the stages here and the tracking there. "
            f"Resume it where it started: relay resume {run_id} --workspace {old}"
        )
    else:
        problem = (
            f"run {run_id} started in workspace {old}, which has moved to {new}; its record (and MLflow's "
            f"database) keep the old absolute paths, so resuming here would write under {old}. "
            f"Move the workspace back to {old} to resume it (`relay runs` and `relay generations` read it here)"
        )
    raise ConfigError([problem], "the command line")
