"""benchmarks/gpu_wheels.py: the slimmed, LZMA-compressed wheel must still install with pip, offline."""

from __future__ import annotations

import importlib
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
gpu_wheels = importlib.import_module("gpu_wheels")

INFO = "demo-1.0.dist-info"


def member(name: str, mode: int = 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, (2026, 12, 3, 0, 0, 0))
    info.external_attr = (stat.S_IFREG | mode) << 16
    return info


def write_wheel(path: Path) -> None:
    """A small wheel shaped like Ray's: a package, a native executable and Java jars to drop."""
    files = {
        "demo/__init__.py": ("VALUE = 42\n", 0o644),
        "demo/bin/server": ("#!/bin/sh\necho up\n", 0o755),
        "demo/jars/big.jar": ("x" * 4096, 0o644),
        f"{INFO}/METADATA": ("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n", 0o644),
        f"{INFO}/WHEEL": ("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n", 0o644),
    }
    record = "".join(f"{name},,\n" for name in files) + f"{INFO}/RECORD,,\n"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, (text, mode) in files.items():
            wheel.writestr(member(name, mode), text)
        wheel.writestr(member(f"{INFO}/RECORD"), record)


def test_distribution_names_are_normalized():
    assert gpu_wheels.distribution_name(Path("pydantic_core-2.50.5-cp312-cp312-manylinux2014_x86_64.whl")) == (
        "pydantic-core"
    )
    assert gpu_wheels.distribution_name(Path("tensorboardX-2.6.5-py3-none-any.whl")) == "tensorboardx"


def test_the_requirements_follow_pyproject_pins():
    pyproject = (ROOT / "pyproject.toml").read_text()
    ray_bounds = gpu_wheels.pinned("ray", "[train,tune]").removeprefix("ray[train,tune]")
    assert ray_bounds and f'"ray[default,train,tune]{ray_bounds}"' in pyproject
    assert f'"{gpu_wheels.pinned("pydantic")}"' in pyproject


def test_choose_keeps_the_named_projects_and_names_what_was_not_resolved():
    wheels = [Path("pydantic_core-2.50.5-cp312-cp312-manylinux2014_x86_64.whl"), Path("numpy-2.5.0-cp312-x.whl")]
    assert gpu_wheels.choose(wheels, {"pydantic-core"}) == {"pydantic-core": wheels[0]}
    with pytest.raises(ValueError, match=r"no wheel of raay was resolved \(resolved: numpy, pydantic-core\)"):
        gpu_wheels.choose(wheels, {"pydantic-core", "raay"})


def test_a_slimmed_wheel_drops_the_jars_keeps_the_rest_and_installs_offline(tmp_path):
    source, slim = tmp_path / "src" / "demo-1.0-py3-none-any.whl", tmp_path / "demo-1.0-py3-none-any.whl"
    source.parent.mkdir()
    write_wheel(source)
    gpu_wheels.slim_wheel(source, slim, ("demo/jars/",))

    with zipfile.ZipFile(slim) as wheel:
        names = set(wheel.namelist())
        assert "demo/jars/big.jar" not in names and "demo/__init__.py" in names
        assert {info.compress_type for info in wheel.infolist()} == {zipfile.ZIP_LZMA}
        assert "demo/jars/" not in wheel.read(f"{INFO}/RECORD").decode()

    site = tmp_path / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(site)]
    done = subprocess.run([*command, str(slim)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (site / "demo" / "__init__.py").read_text() == "VALUE = 42\n"
    assert not (site / "demo" / "jars").exists()
    assert (site / "demo" / "bin" / "server").stat().st_mode & stat.S_IXUSR  # raylet must stay executable
