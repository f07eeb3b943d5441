"""A Relay dataset (Parquet shards) the user may not read: every command that reads it says so and how to fix it.

Before, `relay data info` and `relay run data.uri=...` exited 2 with "could not read the manifest (... Permission
denied)" and no fix, or told the user to re-import a shard that was whole, which needs the source and does not
help. The permission error is real: a chmod-000 path, read by a `relay` subprocess that may not override it
(``tests.unit.unprivileged``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.unprivileged import relay_with_mode

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("data") / "digits"
    assert main(["data", "import", "digits", str(dest)]) == 0
    return dest


def _fix(dataset: Path) -> str:
    return f"make the dataset readable by the user running Relay (e.g. `chmod -R a+rX {dataset}`)"


def _first_shard(dataset: Path) -> Path:
    return sorted((dataset / "train").glob("part-*.parquet"))[0]


@pytest.mark.parametrize(
    "closed", [lambda d: d, lambda d: d / "dataset.json", _first_shard], ids=["folder", "manifest", "shard"]
)
def test_data_info_says_who_may_not_read_and_how_to_let_them(digits: Path, closed) -> None:
    done = relay_with_mode(["data", "info", str(digits), "--verify"], closed(digits), 0)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Permission denied" in done.stderr and _fix(digits) in done.stderr, done.stderr[-3000:]
    assert "re-import" not in done.stderr


def test_a_run_on_a_dataset_it_may_not_read_exits_2_writing_nothing(digits: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", str(SMOKE), f"run.workspace={workspace}", "data.name=parquet", f"data.uri={digits}"]
    done = relay_with_mode(argv, _first_shard(digits), 0)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"data.uri: train/{_first_shard(digits).name}: could not open the shard" in done.stderr
    assert _fix(digits) in done.stderr and "re-import" not in done.stderr, done.stderr[-3000:]
    assert not workspace.exists()
