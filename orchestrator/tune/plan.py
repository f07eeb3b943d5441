"""The ``SweepPlan``: everything a sweep's trials need, fixed once the sweep passed every check; and how many
of its trials run at once.

``plan_sweep`` raises every problem of ``sweep_checks.sweep_check`` as one ConfigError (exit 2) before
Ray starts, and warns of the space's keys no value of which changes a trial (``trial_work.inert_keys``).
The plan travels to Ray workers, so it holds plain picklable values.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import (
    TrackingSettings,
    TuneSettings,
    artifact_uri,
    resolve_workspace,
    tracking_uri,
)
from orchestrator.dag import Pipeline
from orchestrator.engine.fit import live_node_resources, trials_fitting_nodes
from orchestrator.errors import ConfigError
from orchestrator.tune.sweep_checks import repeated_grid_note, sweep_check
from orchestrator.tune.trial_work import inert_keys

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPlan:
    """Everything a trial needs, as plain picklable values (it travels to Ray workers)."""

    name: str
    pipeline_name: str
    base: dict[str, Any]  # the config data, CLI overrides applied, `tune:` removed
    config_model: type
    build: Callable[[Any], Pipeline]
    settings: TuneSettings
    report_stages: tuple[str, ...]  # the metric's stage in each generation
    output: str
    store_uri: str
    tracking_uri: str
    tracking: TrackingSettings  # the trials' pipeline runs track as `relay run` would
    code_version: str | Mapping[str, str]  # one for all stages, or per stage module (fingerprint.code_versions)
    seed: int
    ray_address: str | None = None
    num_cpus: int | None = None
    object_store_memory: int | None = None  # run.object_store_memory: the local Ray instance's store
    sweep_run_id: str | None = None
    pipeline_kind: str = ""  # the config's `pipeline:` (crest), which `relay runs` shows for a trial
    left_out: tuple[str, ...] = ()  # stages trials do not run: comparison branches the metric does not depend on
    pyfunc_loader: str | None = None  # the pipeline spec's: the trials' logged models name it in their MLmodel files
    # this driver's session of the sweep: a trial's retries within it fail at once where a retry repeats a failure
    session: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def metric_name(self) -> str:
        """The metric as the stage reports it (`evaluate/balanced_accuracy` -> `balanced_accuracy`)."""
        return self.settings.metric.split("/", 1)[1]

    @property
    def generations(self) -> int:
        return len(self.report_stages)

    @property
    def experiment_path(self) -> Path:
        return Path(self.output) / "ray" / self.name


def fit_concurrency(
    cluster: Mapping[str, float],
    pipeline: Pipeline,
    trial_cpus: float,
    requested: int | None,
    trials: int,
    nodes: Sequence[Mapping[str, float]] | None = None,
) -> int:
    """How many trials run at once: each needs its driver plus its largest stage; the user may ask for fewer.

    Asking for more than fits would queue stage tasks behind each other while
    their trials hold slots: the sweep gets slower, not wider. Counted per node
    (``trials_fitting_nodes``): a stage worker runs on one node, next to whatever drivers share it.
    ``nodes``: each live node's total resources; None reads them from the connected Ray, and
    without one ``cluster`` counts as a single node.
    """
    if nodes is None:
        nodes = connected_node_resources()
    per_node = list(nodes) or [{"CPU": cluster.get("CPU", 1.0), "GPU": cluster.get("GPU", 0.0)}]
    fits = max(1, trials_fitting_nodes(per_node, pipeline, trial_cpus))
    if requested is not None and requested > fits:
        cpus = max((s.resources.num_cpus * s.resources.workers for s in pipeline.stages), default=1.0)
        gpus = max((s.resources.num_gpus * s.resources.workers for s in pipeline.stages), default=0.0)
        logger.warning(
            "tune.max_concurrent_trials=%d but the cluster fits %d trial(s) at once "
            "(%.2g CPU %.2g GPU per trial, each stage worker on one node of %d); running %d",
            requested,
            fits,
            cpus + trial_cpus,
            gpus,
            len(per_node),
            fits,
        )
    return max(1, min(fits, requested or fits, trials))


def connected_node_resources() -> list[dict[str, float]]:
    """Each live node's total resources from the Ray this process is connected to; [] when it is not."""
    try:
        import ray

        return live_node_resources(ray.nodes()) if ray.is_initialized() else []
    except Exception:  # an older or half-started Ray: the cluster's totals, as one node, still give a count
        return []


def plan_sweep(
    data: Mapping[str, Any],
    config: Any,
    build: Callable[[Any], Pipeline],
    code_version: str | Mapping[str, str],
    output: str | None = None,
    source: str | None = None,
    pyfunc_loader: str | None = None,
) -> SweepPlan:
    """Check the sweep and fix everything a trial needs; every problem raised at once as a ConfigError.

    ``data`` is the config file with CLI overrides applied and ``config`` its
    validated model (the composition root has already checked the rest).
    """
    settings, base, stages = _checked_sweep(data, config, build, source)
    name = settings.name or f"{config.name}-sweep"
    workspace = resolve_workspace(config.run)
    pipeline = build(config)
    return SweepPlan(
        name=name,
        pipeline_name=config.name,
        base=base,
        config_model=type(config),
        build=build,
        settings=with_seed(settings, config.seed),
        report_stages=tuple(stages),
        output=str(Path(output).expanduser().resolve() if output else workspace / "tune" / name),
        store_uri=artifact_uri(config.run),
        tracking_uri=tracking_uri(config.run, config.tracking),
        tracking=config.tracking,
        code_version=code_version,
        seed=config.seed,
        ray_address=config.run.ray_address,
        num_cpus=config.run.num_cpus,
        object_store_memory=config.run.object_store_memory,
        pipeline_kind=config.pipeline,
        left_out=tuple(left_out_stages(pipeline, stages)),
        pyfunc_loader=pyfunc_loader,
    )


def _checked_sweep(
    data: Mapping[str, Any], config: Any, build: Callable[[Any], Pipeline], source: str | None
) -> tuple[TuneSettings, dict[str, Any], list[str]]:
    """(the `tune:` section, the config without it, the metric's stage in each generation) of a sweep that passed
    every check; its problems raised at once as a ConfigError, its space's inert keys warned of."""
    settings: TuneSettings | None = getattr(config, "tune", None)
    if settings is None:
        raise ConfigError(["tune: no `tune:` section; add one with metric and space (see README, Tuning)"], source)
    base = {key: value for key, value in data.items() if key != "tune"}
    stages, problems = sweep_check(base, config, settings, build)
    if problems:
        raise ConfigError(problems, source)
    for line in inert_keys(base, settings.space, type(config), build, stages):
        logger.warning(line)
    if note := repeated_grid_note(settings):
        logger.warning(note)
    return settings, base, stages


def left_out_stages(pipeline: Pipeline, report_stages: Sequence[str]) -> list[str]:
    """The stages a trial does not run, in pipeline order: none of the metric's stages depends on them.

    Why: these are comparison branches (a compute-matched baseline, a student trained without its
    teacher) that a `relay run` adds beside the generations. The scheduler ranks trials on the
    generations' metric only, so such a branch could not change which trial wins, and in every trial
    it would add its own training (a compute-matched baseline as long as all the generations
    together). A trial runs what its reports need; `relay run best.yaml` runs the whole pipeline.
    """
    needed = set(report_stages).union(*(pipeline.upstream(name) for name in report_stages))
    return [stage.name for stage in pipeline.stages if stage.name not in needed]


def left_out_note(plan: SweepPlan) -> str | None:
    """The line a sweep says at its start when its trials leave stages out (``left_out_stages``), else None."""
    if not plan.left_out:
        return None
    return (
        f"sweep {plan.name}: trials do not run {', '.join(plan.left_out)}: trials are ranked on "
        f"{plan.settings.metric} of each generation, which does not depend on them, and running them in every "
        "trial would add their compute to each; `relay run` of the sweep's best.yaml runs them for the best values"
    )


SWEEP_RECORD = "sweep.json"  # beside a trial's ledger: its sweep's name, folder and pipeline kind


def sweep_record(plan: SweepPlan) -> dict[str, str]:
    """What a trial records of its sweep, so that `relay runs` finds the sweep's config wherever it was written.

    Why: a trial keeps no config of its own; its sweep's config was looked for in WORKSPACE/tune/SWEEP
    only, so the trials of a sweep written with `--output` showed the config's name for their pipeline
    and no best metric.
    """
    return {"sweep": plan.name, "folder": plan.output, "pipeline": plan.pipeline_kind}


def with_seed(settings: TuneSettings, seed: int) -> TuneSettings:
    """The settings with the seed the sweep uses: `tune.seed`, or the config's `seed` when it is left out.

    One resolved value for the search, the grid's order and what the sweep logs: MLflow logged
    `tune.seed` as None for a sweep seeded by the config's seed.
    """
    return settings if settings.seed is not None else settings.model_copy(update={"seed": seed})


def with_sweep_run(plan: SweepPlan, sweep_run_id: str | None) -> SweepPlan:
    return dataclasses.replace(plan, sweep_run_id=sweep_run_id)
