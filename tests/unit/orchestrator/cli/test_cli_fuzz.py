"""Property: whatever is done to a shipped config, `relay validate` says valid or exits 2 with one message.

Hypothesis mutates the files in pipelines/configs (drops, duplicates and retypes keys, puts in
extreme and non-finite numbers, odd strings and paths, breaks the YAML text, passes odd
`key=value` overrides) and drives the real CLI in this process. For every case: exit code 0
or 2, never a traceback, at most one `relay:` message, and not one file written in the working
folder or the workspace. A quarter of the cases that exit 2 also go through `relay run`, which
must refuse them the same way before writing anything. Derandomized: the same cases every run.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from orchestrator.config import load_yaml

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"
SHIPPED = {path.name: load_yaml(path) for path in sorted(CONFIGS.glob("*.yaml"))}
CASES = 520
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml where PyYAML has it: the cases stay cheap
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ODD_STRINGS = [
    "", " ", "..", "../../escaped", "a/b", "/", "~", "~nosuchuser/x", "\x00", "x" * 5000, "é ü 中",
    "nosuchscheme://bucket/x", "://x", "file://relative/x", "null", "yes", "${HOME}", "*", "-1", "1e400",
]  # fmt: skip
EXTREME_NUMBERS = [
    10**30, -(10**30), 2**63, -1, 0, 1e308, -1e308, 5e-324, 1e-300, -0.0,
    float("inf"), float("-inf"), float("nan"), "1e400", "-1e400",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.sampled_from(ODD_STRINGS)
)
VALUES = st.one_of(
    SCALARS,
    st.sampled_from(EXTREME_NUMBERS),
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=6), SCALARS, max_size=2),
)


def key_paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a key of the nested mappings (sections and leaves)."""
    paths = []
    if isinstance(data, dict):
        for key, value in data.items():
            paths.append((*prefix, key))
            paths.extend(key_paths(value, (*prefix, key)))
    return paths


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=DUMPER, sort_keys=False)


def mutated(data: dict, path: tuple, value: Any = None, drop: bool = False) -> dict:
    result = yaml.load(dump(data), Loader=LOADER)
    node = result
    for key in path[:-1]:
        node = node[key]
    if drop:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return result


@st.composite
def config_case(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(YAML text, overrides): one shipped config with one mutation."""
    data = draw(st.sampled_from(sorted(SHIPPED)).map(SHIPPED.get))
    text = dump(data)
    kind = draw(st.sampled_from(["drop", "retype", "extreme", "odd", "duplicate", "text", "override"]))
    path = draw(st.sampled_from(key_paths(data)))
    if kind == "drop":
        return dump(mutated(data, path, drop=True)), []
    if kind in ("retype", "extreme", "odd"):
        pool = {"retype": VALUES, "extreme": st.sampled_from(EXTREME_NUMBERS), "odd": st.sampled_from(ODD_STRINGS)}
        return dump(mutated(data, path, draw(pool[kind]))), []
    lines = text.splitlines(keepends=True)
    if kind == "duplicate":
        index = draw(st.integers(0, len(lines) - 1))
        return "".join(lines[: index + 1] + lines[index:]), []
    if kind == "text":
        return broken_text(draw, text), []
    key = ".".join(str(part) for part in path)
    raw = draw(st.one_of(st.text(max_size=12), st.sampled_from([".inf", "yes", "{a: 1, a: 2}", "[", "1e400", "~"])))
    return text, [f"{key}={raw}"]


def broken_text(draw: st.DrawFn, text: str) -> str:
    """Cut, insert into or delete from the YAML text at one place."""
    at = draw(st.integers(0, len(text)))
    how = draw(st.sampled_from(["cut", "insert", "delete", "whole"]))
    if how == "cut":
        return text[:at]
    if how == "delete":
        return text[:at] + text[at + 1 :]
    if how == "whole":
        return draw(st.sampled_from(["", "- a\n- b\n", "just text", "{", "\ufeffpipeline: crest\n", "\t- x"]))
    piece = draw(
        st.sampled_from([":", "{", "[", "'", '"', "\t", "&a", "*a", "!!python/object:os.system", "\x07", "- "])
    )
    return text[:at] + piece + text[at:]


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """An empty folder as the working folder and the workspace's parent; the previous cwd comes back."""
    before = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder) / "a" / "b" / "c"  # deep, so that `../../escaped` still lands inside the scratch
        cwd.mkdir(parents=True)
        os.chdir(cwd)
        try:
            yield Path(folder)
        finally:
            os.chdir(before)


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def relay(argv: list[str]) -> tuple[int, str]:
    """Run the CLI in this process; (exit code, what it printed on stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@pytest.fixture(autouse=True)
def workspace_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default workspace is ./relay-workspace in the scratch folder, whatever the caller's environment."""
    monkeypatch.delenv("RELAY_WORKSPACE", raising=False)


@settings(
    max_examples=CASES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(case=config_case(), also_run=st.integers(0, 3).map(lambda n: n == 0))
def test_a_mutated_config_is_valid_or_refused_with_one_message_and_nothing_written(
    case: tuple[str, list[str]], also_run: bool
) -> None:
    text, overrides = case
    with scratch() as root:
        config = root / "config.yaml"
        config.write_text(text, encoding="utf-8", errors="surrogatepass")
        before = files_under(root)
        code, err = relay(["validate", str(config), *overrides])
        assert code in (0, 2), err
        assert "Traceback" not in err
        assert err.count("relay: ") == (1 if code == 2 else 0), err
        assert files_under(root) == before, "validate wrote files"
        if code == 2 and also_run:
            run_code, run_err = relay(["run", str(config), *overrides])
            assert (run_code, run_err) == (2, err), "run must refuse what validate refuses, the same way"
            assert files_under(root) == before, "run wrote files for bad input"
