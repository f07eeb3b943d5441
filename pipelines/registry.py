"""The pipelines a config file can name with `pipeline: NAME`: a plain dict, so grep finds what runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.dag import Pipeline
from orchestrator.errors import ConfigError
from pipelines import crest, distill, ke, noisy_student


@dataclass(frozen=True)
class PipelineSpec:
    """What the CLI needs to run one kind of pipeline.

    summary: column header -> metric that `relay generations` shows per generation; a
    metric ending in `/*` shows every metric with that prefix in one column (e.g. kept
    picks per class). Metrics are named `<stage role>/<metric>` by the tracker.
    """

    config_model: type
    build: Callable[[Any], Pipeline]
    preflight: Callable[[Any], list[str]]
    summary: dict[str, str]


PIPELINES: dict[str, PipelineSpec] = {
    "crest": PipelineSpec(
        config_model=crest.CrestConfig,
        build=crest.build,
        preflight=crest.preflight,
        summary={
            "balanced_accuracy": "evaluate/balanced_accuracy",
            "tail_recall": "evaluate/tail_recall",
            "pseudo_label_accuracy": "pseudo_label/accuracy",
            "kept": "rebalance/kept_total",
            "kept per class": "rebalance/kept/*",
        },
    ),
    "ke": PipelineSpec(
        config_model=ke.KnowledgeEvolutionConfig,
        build=ke.build,
        preflight=ke.preflight,
        summary={
            "balanced_accuracy": "evaluate/balanced_accuracy",
            "slim_accuracy": "evaluate/slim_accuracy",
            "slim_params": "evaluate/slim_params",
            "dense_params": "evaluate/dense_params",
            "baseline (compute-matched)": "evaluate/baseline_balanced_accuracy",
        },
    ),
    "noisy_student": PipelineSpec(
        config_model=noisy_student.NoisyStudentConfig,
        build=noisy_student.build,
        preflight=noisy_student.preflight,
        summary={
            "balanced_accuracy": "evaluate/balanced_accuracy",
            "tail_recall": "evaluate/tail_recall",
            "params": "evaluate/dense_params",
            "pseudo_label_accuracy": "pseudo_label/accuracy",
            "kept": "filter/kept_total",
            "picks_accuracy": "filter/picks_accuracy",
        },
    ),
    "distill": PipelineSpec(
        config_model=distill.DistillConfig,
        build=distill.build,
        preflight=distill.preflight,
        summary={
            "balanced_accuracy": "evaluate/balanced_accuracy",
            "params": "evaluate/dense_params",
            "no-teacher baseline": "evaluate/baseline_balanced_accuracy",
        },
    ),
}


def get_pipeline(name: Any, source: str | None = None) -> PipelineSpec:
    """The spec registered under `name`, or one ConfigError listing the valid names."""
    if name not in PIPELINES:
        got = "nothing" if name is None else repr(name)
        raise ConfigError([f"pipeline: expected one of {', '.join(sorted(PIPELINES))}, got {got}; set `pipeline:` at the top of the file"], source)
    return PIPELINES[name]
