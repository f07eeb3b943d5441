"""DESIGN.md's import direction, enforced by parsing every module's imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RAY_MODULES = {"executor.py", "distributed.py", "tune.py", "tune_schedulers.py", "jobs.py"}
LEAF_THIRD_PARTY = {"torch", "torchvision", "numpy", "pyarrow", "tqdm"}
LEAF_EXTRA = {"data.py": {"sklearn", "PIL"}, "plots.py": {"matplotlib"}}
NON_LEAF = {"stages.py", "student_stages.py", "bodies.py", "schema.py", "registry.py", "crest.py", "ke.py", "noisy_student.py", "distill.py", "self_training.py", "__init__.py"}
ORCHESTRATOR_PUBLIC = {"orchestrator.dag", "orchestrator.config", "orchestrator.errors", "orchestrator.registry"}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an import statement in `path` names, at any depth (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("*.py"))


@pytest.mark.parametrize("path", modules("orchestrator"), ids=lambda p: p.name)
def test_orchestrator_never_imports_pipelines_and_ray_stays_in_its_modules(path: Path) -> None:
    names = imported_modules(path)
    if path.name != "cli.py":
        assert not any(top(n) == "pipelines" for n in names), f"{path.name} imports pipelines"
    if path.name not in RAY_MODULES:
        assert not any(top(n) == "ray" for n in names), f"{path.name} imports ray"


@pytest.mark.parametrize("path", [p for p in modules("pipelines") if p.name not in NON_LEAF], ids=lambda p: p.name)
def test_leaf_modules_import_only_numeric_libraries(path: Path) -> None:
    allowed = LEAF_THIRD_PARTY | LEAF_EXTRA.get(path.name, set()) | {"pipelines"} | set(sys.stdlib_module_names) | {"__future__"}
    foreign = {n for n in imported_modules(path) if top(n) not in allowed}
    assert not foreign, f"{path.name} imports {sorted(foreign)}"
    pipelines_imports = {n for n in imported_modules(path) if top(n) == "pipelines"}
    assert all(n.split(".")[1] + ".py" not in NON_LEAF for n in pipelines_imports if "." in n), f"{path.name} imports a non-leaf pipelines module"


@pytest.mark.parametrize("path", [p for p in modules("pipelines") if p.name in NON_LEAF], ids=lambda p: p.name)
def test_pipeline_builders_use_only_the_orchestrator_public_api(path: Path) -> None:
    names = imported_modules(path)
    orchestrator = {n for n in names if top(n) == "orchestrator"}
    assert orchestrator <= ORCHESTRATOR_PUBLIC, f"{path.name} imports {sorted(orchestrator - ORCHESTRATOR_PUBLIC)}"
    assert not any(top(n) == "ray" for n in names), f"{path.name} imports ray"


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import ray\n    from pipelines import stages\n")
    assert {"ray", "pipelines"} <= {top(n) for n in imported_modules(bad)}
