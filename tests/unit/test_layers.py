"""The layers of docs/ARCHITECTURE.md, enforced by parsing every module's imports (kedro's import-linter contracts).

Every import statement counts, lazy ones inside functions included: a lazy import still couples two
modules, and it is exactly how the cycles this test was written against had been hidden. Four rules:

1. Each module belongs to one layer, and a layer may import only the layers listed for it in LAYERS.
2. Ray stays in the modules that need a cluster (RAY_MODULES); pipelines never import it.
3. No import cycle between modules, anywhere.
4. No code string in orchestrator/ names a module of pipelines (``"pipelines.stages.mlflow_model"``): a name
   handed to importlib or written into a file (an MLmodel's loader) couples the engine to Relay's
   pipelines as an import does, unseen by rule 1. Docstrings may name them; what the engine needs
   from a pipeline comes from its PipelineSpec.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import pytest

from orchestrator.engine.fingerprint import imports_of

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "pipelines", "relay")

# layer -> the layers it may import (itself included implicitly). A module's layer is the longest
# prefix of its dotted name listed here.
LAYERS: dict[str, set[str]] = {
    "orchestrator.errors": set(),
    "orchestrator.names": set(),
    "orchestrator.dag": {"orchestrator.errors", "orchestrator.names"},
    "orchestrator.yaml_input": {"orchestrator.errors"},
    "orchestrator.config": {"orchestrator.errors", "orchestrator.yaml_input"},
    "orchestrator.registry": {"orchestrator.errors", "orchestrator.dag"},
    "orchestrator.engine": {"orchestrator.errors", "orchestrator.names", "orchestrator.dag", "orchestrator.config"},
    "orchestrator.tracking": {"orchestrator.errors", "orchestrator.dag", "orchestrator.config", "orchestrator.engine"},
    "orchestrator.tune": {
        "orchestrator.errors",
        "orchestrator.dag",
        "orchestrator.config",
        "orchestrator.engine",
        "orchestrator.tracking",
    },
    "orchestrator.sources": {
        "orchestrator.errors",
        "orchestrator.config",
        "orchestrator.engine",
        "orchestrator.tracking",
    },
    # jobs: a Ray Jobs client; of the engine, only the stdlib check of a stage's needs against a cluster's totals
    "orchestrator.jobs": {"orchestrator.errors", "orchestrator.config", "orchestrator.engine.demands"},
    "orchestrator.ui": {"orchestrator.errors", "orchestrator.config", "orchestrator.tracking"},
    "orchestrator.cli": {"orchestrator"},
    "orchestrator": set(),  # orchestrator/__init__.py
    "pipelines.algorithms": set(),  # the top-level pure modules (data, models, losses, ...)
    "pipelines.training": {"pipelines.algorithms"},
    "pipelines.stages": {"pipelines.algorithms", "pipelines.training", "orchestrator.dag", "orchestrator.errors"},
    "pipelines.schema": {"pipelines.algorithms", "orchestrator.config"},
    "pipelines.builders": {
        "pipelines.algorithms",
        "pipelines.schema",
        "pipelines.stages.refs",
        "orchestrator.dag",
        "orchestrator.config",
        "orchestrator.errors",
        "orchestrator.registry",
        "orchestrator.sources",
    },
    "pipelines.registry": {"pipelines.builders", "pipelines.algorithms", "orchestrator.registry"},
    "pipelines": set(),  # pipelines/__init__.py
    "relay": {"orchestrator.cli.api"},  # relay/__init__.py: the Python API's names under a short import
}
# Subpackages of pipelines with a layer of their own; any other pipelines module is a pure algorithm.
PIPELINE_SUBLAYERS = (
    "pipelines.training",
    "pipelines.stages",
    "pipelines.builders",
    "pipelines.schema",
    "pipelines.registry",
)
RAY_MODULES = {
    "orchestrator.engine.ray_executor",
    "orchestrator.engine.ray_task",
    "orchestrator.engine.train_run",
    "orchestrator.engine.actor_pool",
    "orchestrator.engine.ray_session",
}
RAY_PACKAGES = ("orchestrator.tune", "orchestrator.jobs")
# What the pure algorithm modules may use besides the standard library and each other.
ALGORITHM_THIRD_PARTY = {"torch", "torchvision", "numpy", "pyarrow", "tqdm", "sklearn", "PIL", "matplotlib", "ot"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imported(path: Path, name: str) -> set[str]:
    """Every absolute module an import names, at any depth (the engine's reading, also used for code versions)."""
    known = all_modules()
    return imports_of(path, name, known.__contains__)


def layer_of(name: str) -> str:
    if name.startswith("pipelines.") and not name.startswith(PIPELINE_SUBLAYERS):
        return "pipelines.algorithms"
    return max((layer for layer in LAYERS if name == layer or name.startswith(layer + ".")), key=len)


def allowed(source_layer: str, target: str) -> bool:
    target_layer = layer_of(target)
    if target_layer == source_layer:
        return True
    return any(target == ok or target.startswith(ok + ".") or target_layer == ok for ok in LAYERS[source_layer])


def internal(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in PACKAGES}


MODULES = all_modules()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_import_goes_down_the_layers(name: str) -> None:
    source = layer_of(name)
    wrong = sorted(t for t in internal(imported(MODULES[name], name)) if not allowed(source, t))
    assert not wrong, f"{name} (layer {source}) imports {wrong}; allowed: {sorted(LAYERS[source])}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_ray_stays_in_its_modules(name: str) -> None:
    uses_ray = any(n.split(".")[0] == "ray" for n in imported(MODULES[name], name))
    may = name in RAY_MODULES or name.startswith(RAY_PACKAGES)
    assert may or not uses_ray, f"{name} imports ray; only {sorted(RAY_MODULES)} and {RAY_PACKAGES} may"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer_of(n) == "pipelines.algorithms" and "." in n))
def test_algorithm_modules_use_only_numeric_libraries(name: str) -> None:
    allowed_top = ALGORITHM_THIRD_PARTY | set(sys.stdlib_module_names) | {"__future__", "pipelines"}
    foreign = sorted(n for n in imported(MODULES[name], name) if n.split(".")[0] not in allowed_top)
    assert not foreign, f"{name} imports {foreign}"


def module_graph() -> dict[str, set[str]]:
    """Module -> the internal modules it imports (a package import points at its __init__)."""
    graph = {}
    for name, path in MODULES.items():
        targets = {t for t in internal(imported(path, name)) if t in MODULES and t != name}
        graph[name] = targets
    return graph


def test_no_import_cycles() -> None:
    try:
        graphlib.TopologicalSorter(module_graph()).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}; break it by moving the shared piece down a layer")


DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def docstring_nodes(tree: ast.Module) -> set[int]:
    """The ids of the string nodes that are docstrings (a module's, class's or function's first statement)."""
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, DOCUMENTED) and ast.get_docstring(node, clean=False) is not None
    }


def pipeline_module_strings(path: Path) -> list[str]:
    """``line N: 'pipelines.data'`` for each code string of ``path`` that starts with ``pipelines.``, f-strings included.

    Docstrings are left out: they may say which of Relay's modules does what. Comments are no nodes.
    """
    tree = ast.parse(path.read_text(), str(path))
    documentation = docstring_nodes(tree)
    return [
        f"line {node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("pipelines.")
        and id(node) not in documentation
    ]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer_of(n).startswith("orchestrator")))
def test_the_engine_names_no_pipelines_module_in_code(name: str) -> None:
    named = pipeline_module_strings(MODULES[name])
    assert not named, (
        f"{name} names modules of Relay's pipelines in code ({'; '.join(named)}); the engine knows no pipeline: "
        "take what it needs from the run's PipelineSpec (orchestrator/registry.py)"
    )


def test_the_rules_catch_violations(tmp_path: Path) -> None:
    """The checks themselves: a cycle is found, and an engine module importing pipelines is refused."""
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()
    assert not allowed("orchestrator.engine", "pipelines.stages.train")
    assert not allowed("orchestrator.engine", "orchestrator.tracking.background")
    assert not allowed("pipelines.algorithms", "pipelines.training.fixmatch")
    assert allowed("orchestrator.tracking", "orchestrator.engine.records")
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import ray\n    from pipelines.stages import train\n")
    assert imported(bad, "bad") == {"ray", "pipelines.stages.train"}, "lazy imports are seen, modules resolved"
    graph = module_graph()
    assert "orchestrator.engine.body" in graph["orchestrator.engine.train_run"], "the graph holds real edges"
    named = tmp_path / "named.py"
    named.write_text(
        '"""Loads with pipelines.stages.mlflow_model."""\n'
        'LOADER = "pipelines.stages.mlflow_model"  # a comment naming pipelines.data is no node\n'
        "def f(stage):\n"
        '    """Docstrings name pipelines.models freely."""\n'
        '    return importlib.import_module(f"pipelines.stages.{stage}"), "pipelines", "my pipelines."\n'
    )
    assert pipeline_module_strings(named) == [
        "line 2: 'pipelines.stages.mlflow_model'",
        "line 5: 'pipelines.stages.'",
    ], "code strings and f-strings are caught, docstrings and other strings are not"
