"""What a finished stage leaves on its runs: tags and metrics in one batch, its files, plots and text results.

Apart from the tracker because these are the writes, not the bookkeeping: the tracker knows which
runs are open and when a stage ends; these functions put a stage's results on the runs they are
handed (its own, its generation's, the pipeline run), on the client they are handed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.dag import TAGS_FILE
from orchestrator.engine.records import StageRecord
from orchestrator.tracking.common import TAG_CACHE_HIT, TAG_FINGERPRINT, TAG_STATUS
from orchestrator.tracking.run_tree import EVALUATION_ROLE, file_role, metric_prefix

logger = logging.getLogger(__name__)


def log_batch(
    client: Any,
    run: str,
    tags: Mapping[str, str] | None = None,
    metrics: Iterable[tuple[str, float, int]] = (),
    model_id: str | None = None,
    model_keys: Iterable[str] = (),
) -> None:
    """Tags and metrics on ``run`` in one batch; the metrics named in ``model_keys`` also on LoggedModel ``model_id``."""
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    linked = set(model_keys) if model_id else set()
    items = [Metric(k, float(v), now, step, model_id=model_id if k in linked else None) for k, v, step in metrics]
    tag_items = [RunTag(k, v) for k, v in (tags or {}).items()]
    if items or tag_items:  # MlflowClient.log_batch splits them into batches the store accepts
        client.log_batch(run, metrics=items, tags=tag_items)


def outcome_tags(record: StageRecord) -> dict[str, str]:
    """The tags a finished stage's run gets: its fingerprint, whether it was a cache hit, its status, its error."""
    tags = {
        TAG_FINGERPRINT: record.fingerprint,
        TAG_CACHE_HIT: str(record.cache_hit).lower(),
        TAG_STATUS: record.status,
    }
    if record.error:
        tags["relay.error"] = record.error[:5000]
    return tags


def evaluated_model(record: StageRecord, model_ids: Mapping[str, str]) -> str | None:
    """The LoggedModel an evaluation stage (``gNN/evaluate``, ``kd/evaluate``) scored, or None.

    Its metrics are linked to that model (MLflow 3 model metrics), so the experiment's model list
    shows each generation's balanced accuracy and ``search_logged_models(filter_string=
    "metrics.balanced_accuracy > 0.9")`` finds models by it; unlinked, every LoggedModel had none.
    The model is the one model artifact the stage read, logged (or linked) when its train stage
    finished, which the tracker's one queue orders before the evaluation.
    """
    if metric_prefix(record.stage) != EVALUATION_ROLE or record.status != "FINISHED":
        return None
    scored = [model_ids[name] for name in record.inputs if name in model_ids]
    return scored[0] if len(scored) == 1 else None


def log_files(client: Any, run: str, record: StageRecord, gen_runs: Mapping[int, str], parent: str) -> None:
    """Plots and tables on the stage run, and again on the generation run under the stage's role.

    The copy on ``gen-NN`` (``evaluate/per_class.png``, ``rebalance/picks.csv``) is
    what a user opening a generation sees without digging into its stage runs. A plot is
    also logged on the pipeline run as an image with step = generation (key
    ``evaluate/per_class``), so the UI steps through the generations on one page. A side
    branch's files keep their stage name (``kd/evaluate/per_class.png``): see ``file_role``.
    """
    for name, local in record.files.items():
        if name == TAGS_FILE:
            log_stage_tags(client, run, record, local, gen_runs, parent)
            continue
        client.log_artifact(run, local)
        if record.generation is None:
            continue
        role = file_role(record.stage, record.generation)
        client.log_artifact(gen_runs[record.generation], local, role)
        if name.endswith(".png"):
            log_step_image(client, parent, local, f"{role}/{Path(name).stem}", record.generation)


def log_stage_tags(
    client: Any, run: str, record: StageRecord, local: str, gen_runs: Mapping[int, str], parent: str
) -> None:
    """A stage's text results (its ``TAGS_FILE``) as tags on its run, its generation's and the pipeline's.

    The pipeline run carries them too, so the runs table can show them (``domain.chosen_source``):
    a metric holds a number only, and a source chosen by name read as an index there.
    """
    try:
        found = json.loads(Path(local).read_text())
    except (OSError, ValueError) as exc:
        logger.warning("could not read %s's tags from %s: %s", record.stage, local, exc)
        return
    if not isinstance(found, dict):
        logger.warning("%s's %s is not a JSON object of tags; not logged", record.stage, TAGS_FILE)
        return
    tags = {str(key): str(value)[:5000] for key, value in found.items()}
    targets = [run, parent] if record.generation is None else [run, gen_runs[record.generation], parent]
    for target in targets:
        log_batch(client, target, tags=tags)


def log_step_image(client: Any, parent: str, local: str, key: str, generation: int) -> None:
    """One generation's plot on the pipeline run, at step = generation; an unreadable image only warns."""
    import mlflow

    try:
        image = mlflow.Image(local)
    except (OSError, ValueError) as exc:  # the file itself is logged already; only the stepped view is lost
        logger.warning("could not read %s as an image for the pipeline run's %s: %s", local, key, exc)
        return
    client.log_image(parent, image, key=key, step=generation, synchronous=True)


def start_monitor(run: str, interval_s: float, tracking_uri: str) -> Any:
    """Sample this machine (CPU, memory, disk, network, GPU) into the stage run while the stage runs.

    The stage itself runs in a Ray worker; on a single node that worker
    shares this machine, so these are the stage's resources plus the
    driver's. On a cluster they describe the head node only. A stage
    shorter than one interval logs nothing: the first sample is logged
    after one interval.
    """
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        run,
        sampling_interval=interval_s,
        samples_before_logging=1,
        tracking_uri=tracking_uri,
    )
    monitor.start()
    return monitor
