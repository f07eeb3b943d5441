"""`make gpu-wheels`: the wheels `make gpu-check` needs on a GPU machine that reaches no package registry.

A GPU image usually has torch, torchvision, numpy, pyarrow, pandas, scikit-learn and pytest, but
not Ray or pydantic, and a machine lent for a GPU check may reach no registry at all. Run this
where pip reaches one; it resolves Ray and pydantic (at the versions pyproject.toml pins) for the
GPU machine's Python and platform, keeps the wheels of the packages such images lack (``--keep``),
and writes them to one folder. Carry that folder to the GPU machine and run
``make gpu-check WHEELS=<folder>``: the wheels are installed there with ``--no-index``.

Ray's wheel (79 MB for 2.60) is rewritten without its Java jars, which a Python-only check never
loads, and with LZMA instead of deflate (pip reads either), so the folder is about 37 MB and fits
beside the repo in a 64 MiB transfer. Its RECORD loses the dropped files' lines; every kept file
is byte for byte the original, so RECORD's hashes still hold.

Usage: python benchmarks/gpu_wheels.py [--out .gpu-wheels] [--python-version 3.12]
       [--keep ray,pydantic,...]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

# What a CUDA image with PyTorch typically lacks of what `make gpu-check` imports: Ray and the parts of
# its dependency tree that are not already scientific-Python staples, and pydantic (Relay's configs).
KEEP = (
    "ray,tensorboardx,jsonschema,jsonschema-specifications,referencing,rpds-py,"
    "pydantic,pydantic-core,annotated-types,typing-inspection"
)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
DROPPED_FROM_RAY = ("ray/jars/",)


def normalized(name: str) -> str:
    """A project name as PEP 503 compares them: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_name(wheel: Path) -> str:
    """The normalized project name of a wheel file."""
    return normalized(wheel.name.split("-")[0])


def pinned(name: str, extras: str = "") -> str:
    """pyproject.toml's requirement of ``name`` (its version bounds), with ``extras`` instead of its own.

    Read from pyproject.toml, so the wheels follow the pin the tests ran with. Ray's own extras
    there include ``default`` (the dashboard's packages), which a GPU check does not start.
    """
    dependencies = tomllib.loads((_common.ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in dependencies:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(\[[^\]]*\])?\s*([^;]*)(;.*)?", dependency.strip())
        if match and normalized(match[1]) == normalized(name):
            return f"{name}{extras}{match[3].strip()}"
    raise LookupError(f"pyproject.toml declares no dependency named {name}")


def download(requirements: list[str], python_version: str, into: Path) -> list[Path]:
    """Binary wheels of ``requirements`` and everything they need, for that Python on x86-64 Linux."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    command += ["--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(into)]
    subprocess.run([*command, *requirements], check=True)
    return sorted(into.glob("*.whl"))


def choose(wheels: list[Path], keep: set[str]) -> dict[str, Path]:
    """The wheel of each project in ``keep``, by normalized name; ValueError naming any not resolved."""
    chosen = {distribution_name(wheel): wheel for wheel in wheels if distribution_name(wheel) in keep}
    if missing := sorted(keep - set(chosen)):
        resolved = ", ".join(sorted(distribution_name(wheel) for wheel in wheels))
        raise ValueError(f"no wheel of {', '.join(missing)} was resolved (resolved: {resolved}); fix --keep")
    return chosen


def slim_wheel(source: Path, target: Path, dropped: tuple[str, ...]) -> None:
    """Copy a wheel without the members under ``dropped``, LZMA-compressed, its RECORD to match."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", compression=zipfile.ZIP_LZMA) as dst:
        for info in src.infolist():
            if info.filename.startswith(dropped):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = [line for line in data.decode().splitlines() if not line.startswith(dropped)]
                data = ("\n".join(lines) + "\n").encode()
            member = zipfile.ZipInfo(info.filename, info.date_time)
            member.external_attr = info.external_attr  # keeps the executable bit of raylet and gcs_server
            member.compress_type = zipfile.ZIP_LZMA
            dst.writestr(member, data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(_common.ROOT / ".gpu-wheels"), help="folder to write the wheels to")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (`python3 --version` there)")
    p.add_argument("--keep", default=KEEP, help="comma-separated projects whose wheels go into the folder")
    args = p.parse_args()
    keep = {normalized(name.strip()) for name in args.keep.split(",") if name.strip()}
    requirements = [pinned("ray", "[train,tune]"), pinned("pydantic")]
    with tempfile.TemporaryDirectory(prefix="relay-gpu-wheels-") as tmp:
        try:
            resolved = download(requirements, args.python_version, Path(tmp))
        except subprocess.CalledProcessError:
            sys.exit(f"gpu-wheels: pip could not download {' '.join(requirements)} for Python {args.python_version}")
        try:  # before the folder is touched: a bad --keep leaves it as it was
            chosen = choose(resolved, keep)
        except ValueError as problem:
            p.error(str(problem))  # argparse's usage error: on stderr, exit 2
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.whl"):
            old.unlink()
        for name, wheel in chosen.items():
            if name == "ray":
                slim_wheel(wheel, out / wheel.name, DROPPED_FROM_RAY)
            else:
                (out / wheel.name).write_bytes(wheel.read_bytes())
    wheels = sorted(out.glob("*.whl"))
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:7.1f} MB  {wheel.name}")
    print(f"{sum(w.stat().st_size for w in wheels) / 2**20:7.1f} MB  in {out}")


if __name__ == "__main__":
    main()
