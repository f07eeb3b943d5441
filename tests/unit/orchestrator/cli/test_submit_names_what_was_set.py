"""`relay submit` refusals name what the user set: the --workspace / run.workspace of a temporary workspace, and
for a --run-id the store holds, the way on that fits (a submit --resume, or another id for a finished run).

Both are checked before the cluster is asked (the address only has to be well formed), on a real local
store; nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, record_path, write_ledger
from tests.integration.cluster import durable_folder

ROOT = Path(__file__).resolve().parents[4]
SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")
NOWHERE = "http://127.0.0.1:9"  # well formed; never reached: the refusals come first


@pytest.fixture(autouse=True)
def shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell without store settings, so that only what each test sets names the stores."""
    for name in ("RELAY_WORKSPACE", "RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def durable() -> Iterator[Path]:
    """A workspace outside the temporary folders (a submit refuses those), removed after the test."""
    with durable_folder("submit-names") as path:
        yield path


@pytest.mark.parametrize(
    ("given", "key"),
    [(["--workspace", "/tmp/relay-x"], "--workspace"), (["run.workspace=/tmp/relay-x"], "run.workspace")],
)
def test_a_temporary_workspace_is_refused_naming_the_setting_used(given, key, capsys) -> None:
    assert main(["submit", SMOKE, *given, "--address", NOWHERE]) == 2
    err = capsys.readouterr().err
    assert f"{key}: the artifact store (stage outputs, run records) /tmp/relay-x/artifacts would be under /tmp" in err
    assert f"point {key} at a folder every node mounts" in err, err
    assert "set RELAY_WORKSPACE" not in err, err
    assert not Path("/tmp/relay-x").exists(), "nothing written"


def test_the_workspace_variable_is_named_as_such(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RELAY_WORKSPACE", "/tmp/relay-x")
    assert main(["submit", SMOKE, "--address", NOWHERE]) == 2
    assert "point $RELAY_WORKSPACE at a folder every node mounts" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "way_on", "not_said"),
    [
        ("FINISHED", "it has finished: pick another --run-id", "--resume"),
        (
            "FAILED",
            f"it is FAILED: finish it with `relay submit --resume r1 --address {NOWHERE} --artifact-uri ",
            "relay resume r1",
        ),
    ],
)
def test_a_run_id_the_store_holds_says_the_submit_way_on(durable, status, way_on, not_said, capsys) -> None:
    store = ArtifactStore(str(durable / "artifacts"))
    store.write_record(record_path("r1", CONFIG_FILE), b"pipeline: crest\n")
    write_ledger(store, "r1", {"pipeline": "crest", "status": status})
    argv = ["submit", SMOKE, "--workspace", str(durable), "--run-id", "r1", "--address", NOWHERE]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--run-id: a run 'r1' already exists in" in err and way_on in err, err
    assert not_said not in err, err
    assert not (durable / "mlflow.db").exists(), "nothing written"
