"""Every file path and module a comment, docstring or doc names exists in the repo.

The repo has to stand on its own: a comment that sends a reader to `orchestrator/artifacts.py`
when the file lives at `orchestrator/engine/artifacts.py` is a dead end. Two kinds of reference
are checked in every tracked text file:

1. Paths rooted at one of the repo's top-level folders (`pipelines/stages/train.py`,
   `docs/ALGORITHMS.md`); placeholders in capitals (`runs/RUN_ID/...`) are not paths.
2. Dotted names of Relay's own modules (`orchestrator.engine.digests`, `pipelines.data._digits_table`):
   the longest prefix that is a module must exist, and a name after it must be defined or imported there.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_FOLDERS = ("orchestrator", "pipelines", "benchmarks", "tests", "docs", "cluster", ".ci")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ""}
# Names that look like module paths but are not: a layer of tests/unit/test_layers.py, and the
# registry module's `get` called as `pipelines.get` where `pipelines` is a local name.
NOT_MODULES = {"pipelines.algorithms", "pipelines.get"}
# `python benchmarks/x.py` explains how scripts are started; no such file is meant.
NOT_FILES = {"benchmarks/x.py"}
# What the benchmarks write when they run (benchmarks/results/gpu_check.json only exists after a GPU check).
OUTPUT_FOLDER = "benchmarks/results/"

FILE_REFERENCE = re.compile(r"(?<![\w/.$-])((?:" + "|".join(re.escape(f) for f in TOP_FOLDERS) + r")/[\w./-]*[\w])")
MODULE_REFERENCE = re.compile(r"(?<![\w./])((?:orchestrator|pipelines)(?:\.\w+)+)")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / n for n in names.splitlines()]
    this = Path(__file__).resolve()  # its own examples name missing files on purpose
    return [p for p in paths if p.is_file() and p.suffix in TEXT_SUFFIXES and "results" not in p.parts and p != this]


def is_placeholder(path: str) -> bool:
    """`runs/RUN_ID/ledger.json`, `configs/NAME.yaml`: a part in capitals stands for a name."""
    return any(re.fullmatch(r"[A-Z][A-Z0-9_]*(\.\w+)?", part) for part in path.split("/"))


def exists(path: str) -> bool:
    """A file or folder of the repo; `benchmarks/_common.run_cached` names a function of `benchmarks/_common.py`."""
    module, _, name = path.partition(".")
    return (ROOT / path).exists() or bool(
        name and (ROOT / f"{module}.py").exists() and defines(ROOT / f"{module}.py", name)
    )


def missing_files(text: str) -> list[str]:
    found = {m.group(1).rstrip(".") for m in FILE_REFERENCE.finditer(text)}
    named = (p for p in found if p not in NOT_FILES and not p.startswith(OUTPUT_FOLDER) and not is_placeholder(p))
    return sorted(p for p in named if not exists(p))


def defines(module: Path, name: str) -> bool:
    """Whether ``module``'s text defines, assigns or imports ``name`` (a function, class, constant or submodule)."""
    source = module.read_text()
    pattern = rf"^\s*(?:async\s+def|def|class)\s+{name}\b|^\s*{name}\s*[:=]|^\s*(?:from|import)\b.*\b{name}\b"
    return re.search(pattern, source, re.M) is not None


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:end])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.exists():
            return end == len(parts) or defines(module, parts[end])
    return False


def missing_modules(text: str) -> list[str]:
    found = {m.group(1) for m in MODULE_REFERENCE.finditer(text)}
    return sorted(n for n in found if n not in NOT_MODULES and not resolves(n))


@pytest.mark.parametrize("path", tracked_text_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_file_and_module_exists(path: Path) -> None:
    text = path.read_text(errors="replace")
    assert missing_files(text) == [], f"{path.relative_to(ROOT)} names files the repo lacks"
    assert missing_modules(text) == [], f"{path.relative_to(ROOT)} names modules the repo lacks"


def test_the_checks_catch_a_wrong_reference() -> None:
    """The two finders report what does not exist and pass what does: a test that cannot fail checks nothing."""
    assert missing_files("see orchestrator/artifacts.py and orchestrator/engine/artifacts.py") == [
        "orchestrator/artifacts.py"
    ]
    assert missing_files("runs/RUN_ID/ledger.json, docs/NAME.md, benchmarks/_common.run_cached") == []
    assert missing_files("benchmarks/_common.no_such_function") == ["benchmarks/_common.no_such_function"]
    assert missing_modules("orchestrator.engine.digests, orchestrator.engine.no_such_module") == [
        "orchestrator.engine.no_such_module"
    ]
    assert missing_modules("pipelines.data._digits_table and pipelines.data._no_such_name") == [
        "pipelines.data._no_such_name"
    ]
