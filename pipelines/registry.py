"""The pipelines a config file can name with `pipeline: NAME`: a plain dict, so grep finds what runs."""

from __future__ import annotations

from typing import Any

from orchestrator import registry
from orchestrator.registry import PipelineSpec
from pipelines.builders import crest, distill, knowledge_evolution, noisy_student


PIPELINES: dict[str, PipelineSpec] = {
    "crest": PipelineSpec(
        name="crest",
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
        name="ke",
        config_model=knowledge_evolution.KnowledgeEvolutionConfig,
        build=knowledge_evolution.build,
        preflight=knowledge_evolution.preflight,
        summary={
            "balanced_accuracy": "evaluate/balanced_accuracy",
            "slim_accuracy": "evaluate/slim_accuracy",
            "slim_params": "evaluate/slim_params",
            "dense_params": "evaluate/dense_params",
            "baseline (compute-matched)": "evaluate/baseline_balanced_accuracy",
        },
    ),
    "noisy_student": PipelineSpec(
        name="noisy_student",
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
        name="distill",
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
    return registry.get_pipeline(name, PIPELINES, source)
