"""Every registered pipeline, timm-style: the tests iterate the registry, never a hand-kept list."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_yaml, validate_config
from pipelines.builders import distill, noisy_student
from pipelines.builders import knowledge_evolution as ke
from pipelines.registry import PIPELINES

CONFIGS = Path(__file__).resolve().parents[3] / "pipelines" / "configs"
OURS = {"ke": ke.KnowledgeEvolutionConfig, "noisy_student": noisy_student.NoisyStudentConfig, "distill": distill.DistillConfig}


@pytest.mark.parametrize("name", sorted(OURS))
def test_registry_entries_point_at_the_builders(name: str) -> None:
    spec = PIPELINES[name]
    assert spec.config_model is OURS[name]
    assert spec.summary["balanced_accuracy"] == "evaluate/balanced_accuracy"
    assert spec.build(spec.config_model()).stages


STUDENT_CONFIGS = [p for p in sorted(CONFIGS.glob("*.yaml")) if load_yaml(p).get("pipeline") in OURS]


@pytest.mark.parametrize("path", STUDENT_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_build(path: Path) -> None:
    data = load_yaml(path)
    assert path.read_text().splitlines()[0].startswith(f"# relay run pipelines/configs/{path.name}")
    cfg = validate_config(PIPELINES[data["pipeline"]].config_model, data, source=str(path))
    assert PIPELINES[data["pipeline"]].build(cfg).stages
