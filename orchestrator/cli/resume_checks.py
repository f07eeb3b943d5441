"""What `relay resume` refuses (exit 2) before it takes a run over: changed data, a finished run's --stop-after.

Apart from ``resume_guard`` (whether another driver may still run it, and the claim on it): these
compare the run's record with the world as it is now, and say the way on.
"""

from __future__ import annotations

from typing import Any

from orchestrator.cli.config_checks import data_problems, dotted_value
from orchestrator.cli.run_record import readable_ledger
from orchestrator.engine.artifacts import ArtifactStore, store_fault
from orchestrator.engine.ledger import RunStatus
from orchestrator.errors import ConfigError
from orchestrator.registry import PipelineSpec

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
