"""What every MLflow writer here shares: the run tree's tags, the failure guard, the experiment.

Tracking is a side channel: a failed MLflow call warns and the work goes on, unless
``strict`` asks for it to stop the run. Pipeline runs (MlflowTracker) and Tune sweeps
(SweepTracker) write to the same experiments under the same rules, so the guard, the
experiment lookup and the tag names live here once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import TrackingError

logger = logging.getLogger(__name__)

T = TypeVar("T")

TAG_PIPELINE_RUN = "relay.pipeline_run"
TAG_PIPELINE = "relay.pipeline"
TAG_KIND = "relay.kind"
TAG_GENERATION = "relay.generation"
TAG_STAGE = "relay.stage"
TAG_FINGERPRINT = "relay.fingerprint"
TAG_CACHE_HIT = "cache_hit"
TAG_STATUS = "relay.status"
TAG_PARENT = "mlflow.parentRunId"
TAG_SWEEP = "relay.sweep"
# The MLflow UI (3.x) opens an experiment in its model-training view, not the GenAI one, when this
# experiment tag says so; without it the UI guesses, and filed pipeline runs under "Evaluation runs".
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"

CONTINUING = "continuing without it (set tracking.strict=true to stop instead)"


def guarded(op: str, action: Callable[[], T], tracking_uri: str, strict: bool, going_on: str = CONTINUING) -> T | None:
    """Run one tracking action; on failure raise a TrackingError if ``strict``, else warn and return None.

    ``going_on`` ends the warning: what carries on without MLflow (the pipeline, the sweep).
    """
    try:
        return action()
    except Exception as exc:
        if strict:
            raise TrackingError(
                f"MLflow {op} failed against {tracking_uri}: {exc}; fix the tracking store "
                "or set tracking.strict=false to run without it"
            ) from exc
        logger.warning("MLflow %s failed against %s (%s); %s", op, tracking_uri, exc, going_on)
        return None


def ensure_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) when missing; a deleted one is refused.

    A new experiment is marked as model training (TAG_EXPERIMENT_KIND); an existing one gets the
    mark only when it has no kind yet, so a kind chosen in the UI is kept.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(
            name, artifact_location=artifact_location, tags={TAG_EXPERIMENT_KIND: MODEL_TRAINING}
        )
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"experiment {name!r} is deleted; restore it "
            f"(mlflow experiments restore) or choose another tracking.experiment"
        )
    if TAG_EXPERIMENT_KIND not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING)
    return experiment.experiment_id


def log_params(client: Any, run: str, params: Mapping[str, Any]) -> None:
    """Params as text in one call: MlflowClient.log_batch splits them into the batches the store accepts
    and cuts over-long values (with a warning); keys are cut here, where MLflow would refuse them."""
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH

    client.log_batch(run, params=[Param(k[:MAX_ENTITY_KEY_LENGTH], str(v)) for k, v in params.items()])


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file behind a sqlite:/// URI (None for other stores)."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def no_database_message(db: Path) -> str:
    """What `relay ui` and `relay generations` say about a workspace without a tracking database, and what to do."""
    return (
        f"no runs yet: there is no tracking database at {db}; make one with "
        f"`RELAY_WORKSPACE={db.parent} relay run pipelines/configs/smoke.yaml`, or pass --workspace"
    )


def default_artifact_location(tracking_uri: str) -> str | None:
    """Keep a sqlite store's artifacts beside its database instead of in ./mlruns of whatever cwd."""
    db = sqlite_path(tracking_uri)
    return (db.parent.resolve() / "mlartifacts").as_uri() if db is not None else None
