"""`import relay`: the Python API's public names under a short import, and nothing of its own.

Checked the way tests/unit/test_layers.py reads imports (every import statement, lazy ones too), and
against the packages setuptools installs from pyproject.toml's own include list.
"""

from __future__ import annotations

import tomllib

import setuptools

import relay
from orchestrator.cli import api
from tests.unit.test_layers import LAYERS, MODULES, ROOT, allowed, imports_of


def test_relay_imports_only_the_python_api() -> None:
    path = ROOT / "relay" / "__init__.py"
    imported = imports_of(path, "relay", MODULES.__contains__)
    assert imported == {"orchestrator.cli.api"}
    assert all(allowed("relay", name) for name in imported), LAYERS["relay"]


def test_relay_re_exports_every_public_name_of_the_api_as_the_same_object() -> None:
    assert relay.__all__ == api.__all__
    assert all(getattr(relay, name) is getattr(api, name) for name in api.__all__)
    assert {"run", "resume", "predict", "model", "InputError"} <= set(relay.__all__)


def test_setuptools_installs_the_relay_package() -> None:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "relay" in setuptools.find_packages(str(ROOT), include=include)
