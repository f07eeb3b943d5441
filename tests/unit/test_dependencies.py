"""pyproject.toml declares what the code imports, and everything it declares is installed and imports.

A static scan: every import statement in orchestrator/ and pipelines/ (lazy ones inside functions
too) names a top-level package, which must be the standard library, our own, or belong to a
declared distribution (import names map to distributions through packages_distributions():
`yaml` is PyYAML, `sklearn` is scikit-learn). Tests may also use the `test` extra.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"orchestrator", "pipelines", "relay", "tests", "benchmarks", "__future__"}
# Declared for what they do at run time without being imported by our code.
RUNTIME_ONLY = {
    "psutil": "MLflow's system metrics",
    "optuna": "Ray Tune's OptunaSearch (tune.search: optuna)",
}
# Import names that differ from the distribution's name.
IMPORT_NAMES = {
    "pyyaml": "yaml",
    "scikit-learn": "sklearn",
    "pillow": "PIL",
    "pytest-timeout": "pytest_timeout",
    "pytest-xdist": "xdist",
    "pot": "ot",
    "grpcio": "grpc",
}
# Extras of a declared distribution and a module each one makes importable.
EXTRA_MODULES = {"ray": ["ray.train", "ray.tune", "ray.job_submission", "ray.dashboard"]}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extra: str | None = None) -> set[str]:
    """Distribution names in pyproject.toml's dependencies (and one optional extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])
    return {normalized(re.match(r"[A-Za-z0-9._-]+", spec).group(0)) for spec in specs}


def imports_of(path: Path) -> set[str]:
    """Top-level names of every absolute import in one file, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - FIRST_PARTY - set(sys.stdlib_module_names)


@cache
def distributions_of() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def undeclared(folders: tuple[str, ...], allowed: set[str]) -> list[str]:
    """`file: import (distribution)` for every third-party import no declared distribution provides."""
    problems = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in sorted(imports_of(path)):
                dists = {normalized(d) for d in distributions_of().get(name, [])}
                if not dists & allowed:
                    problems.append(f"{path.relative_to(ROOT)}: {name} ({', '.join(sorted(dists)) or 'not installed'})")
    return problems


def test_every_import_of_the_package_is_declared() -> None:
    problems = undeclared(("orchestrator", "pipelines", "relay"), declared())
    assert not problems, "imported but not in pyproject.toml's dependencies:\n" + "\n".join(problems)


def test_every_import_of_the_tests_is_declared_or_a_test_extra() -> None:
    problems = undeclared(("tests",), declared("test"))
    assert not problems, "imported but not declared (dependencies or the test extra):\n" + "\n".join(problems)


def test_declared_but_not_imported_packages_say_why() -> None:
    """A dependency nothing imports is either used at run time by another package (RUNTIME_ONLY) or dead weight."""
    imported = {normalized(d) for folder in ("orchestrator", "pipelines") for path in (ROOT / folder).rglob("*.py")
                for name in imports_of(path) for d in distributions_of().get(name, [])}  # fmt: skip
    unused = declared() - imported - set(RUNTIME_ONLY)
    assert not unused, f"declared but never imported (drop them, or say in RUNTIME_ONLY what uses them): {unused}"


@pytest.mark.parametrize("distribution", sorted(declared("test")))
def test_every_declared_distribution_is_installed_and_imports(distribution: str) -> None:
    """Each declared distribution is installed, and its module (and the modules of its extras) import."""
    importlib.metadata.version(distribution)  # raises PackageNotFoundError when it is not installed
    module = IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))
    assert distribution in {normalized(d) for d in distributions_of().get(module, [])}, (module, distribution)
    for name in [module, *EXTRA_MODULES.get(distribution, [])]:
        importlib.import_module(name)
