"""A workspace's MLflow store is created atomically, and a half-made one is named, not met with a traceback.

MLflow builds a new sqlite store in place through migrations that are not one transaction; a run
killed meanwhile left a half-migrated mlflow.db that every later command failed on. Real sqlite
files, a real MLflow store and real processes killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.tracking.common import open_experiment
from tests.integration.relay_cli import ROOT, relay

pytestmark = pytest.mark.integration

CREATE_STORE = """
import sys
from orchestrator.tracking.common import open_experiment
open_experiment("sqlite:///" + sys.argv[1], "relay", None)
"""

# Holds a write transaction open on the store, says so, and waits to be killed: a hot journal is left.
INTERRUPTED_WRITE = """
import sqlite3, sys, time
from pathlib import Path
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("PRAGMA cache_size = 1")  # pages spill into the database file before the commit
connection.execute("BEGIN")
connection.execute("DELETE FROM alembic_version")
connection.execute("CREATE TABLE filler (x)")
connection.execute("INSERT INTO filler SELECT randomblob(4000) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) SELECT i FROM n)")
Path(sys.argv[2]).write_text("writing")
time.sleep(600)
"""


def _wait_for(found, process: subprocess.Popen, what: str, limit_s: float = 120) -> None:
    """Poll until ``found()`` holds; a bounded wait, so a process that never gets there fails the test."""
    deadline = time.monotonic() + limit_s
    while not found():
        if process.poll() is not None:
            pytest.fail(f"the process ended (rc={process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{what} never happened")
        time.sleep(0.01)


def _building(workspace: Path) -> list[Path]:
    """Temporary stores being built that already hold some schema (a non-empty file)."""
    return [p for p in workspace.glob("mlflow.db.creating-*") if p.exists() and p.stat().st_size > 0]


def _schema_is_mlflows(db: Path) -> bool:
    """Whether the store is at the installed MLflow's newest migration (MLflow refuses to open it otherwise)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    try:
        SqlAlchemyStore(f"sqlite:///{db}", (db.parent / "mlartifacts").as_uri()).engine.dispose()
    except Exception:
        return False
    return True


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def _half_migrated_store(workspace: Path) -> Path:
    """A complete, empty store whose schema version is one migration behind its tables: a migration killed
    after its DDL but before alembic recorded it (what a killed in-place creation leaves)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config  # test only: which revision precedes the head

    db = workspace / "mlflow.db"
    open_experiment(f"sqlite:///{db}", "relay", None)
    script = ScriptDirectory.from_config(_get_alembic_config(""))
    previous = script.get_revision(script.get_current_head()).down_revision
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (previous,))
    return db


def test_a_creation_killed_midway_leaves_no_store_and_the_next_one_works(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    process = subprocess.Popen([sys.executable, "-c", CREATE_STORE, str(db)], cwd=ROOT)
    _wait_for(lambda: _building(tmp_path), process, "the store's schema was being built in a temporary file")
    _kill(process)

    assert not db.exists(), "a killed creation left a half-made mlflow.db"
    assert list(tmp_path.glob("mlflow.db.creating-*")), "the killed creation's temporary file is what it leaves"

    client, experiment_id = open_experiment(f"sqlite:///{db}", "relay", None)
    run = client.create_run(experiment_id, run_name="after-the-kill")
    assert MlflowClient(f"sqlite:///{db}").get_run(run.info.run_id).info.run_name == "after-the-kill"
    assert _schema_is_mlflows(db)
    assert not list(tmp_path.glob("mlflow.db.creating-*")), "the stale temporary store was not removed"


def test_an_existing_store_with_runs_is_kept(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, experiment_id = open_experiment(uri, "relay", None)
    kept = client.create_run(experiment_id, run_name="kept").info.run_id

    open_experiment(uri, "relay", None)

    assert MlflowClient(uri).get_run(kept).info.run_name == "kept"


def test_two_creations_at_once_make_one_working_store(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    processes = [subprocess.Popen([sys.executable, "-c", CREATE_STORE, str(db)], cwd=ROOT) for _ in range(2)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]

    client = MlflowClient(f"sqlite:///{db}")
    assert [e.name for e in client.search_experiments() if e.name == "relay"] == ["relay"]
    assert _schema_is_mlflows(db)
    assert not list(tmp_path.glob("mlflow.db.creating-*"))


def _assert_half_made_message(result: subprocess.CompletedProcess, db: Path) -> None:
    said = result.stdout + result.stderr
    assert result.returncode == 2, said
    assert "Traceback" not in said, said
    assert f"{db} is a half-made MLflow store" in said, said
    assert f"mv {db} {db}.broken" in said, said


@pytest.mark.parametrize("command", [("generations",), ("ui",)])
def test_a_half_migrated_store_is_named_with_what_to_do(tmp_path: Path, command: tuple[str, ...]) -> None:
    db = _half_migrated_store(tmp_path)

    result = relay(*command, "--workspace", str(tmp_path), workspace=tmp_path, timeout_s=300)

    _assert_half_made_message(result, db)


def test_a_half_migrated_store_left_mid_write_is_named_and_kept(tmp_path: Path) -> None:
    """The case seen in use: a hot journal beside a half-migrated store; read-only opens failed on it."""
    db = _half_migrated_store(tmp_path)
    writing = tmp_path / "writing"
    process = subprocess.Popen([sys.executable, "-c", INTERRUPTED_WRITE, str(db), str(writing)], cwd=ROOT)
    _wait_for(writing.exists, process, "the write transaction began")
    _kill(process)
    journal = tmp_path / "mlflow.db-journal"
    assert journal.exists()
    reading = closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True))
    with pytest.raises(sqlite3.OperationalError), reading as reader:  # a read-only open cannot roll the write back
        reader.execute("SELECT COUNT(*) FROM runs").fetchone()
    before = db.read_bytes(), journal.read_bytes()

    result = relay("generations", "--workspace", str(tmp_path), workspace=tmp_path, timeout_s=300)

    _assert_half_made_message(result, db)
    assert (db.read_bytes(), journal.read_bytes()) == before, "reading the store wrote to it"


def test_a_run_on_a_half_migrated_store_is_refused_before_it_starts(tmp_path: Path) -> None:
    """A store broken for good fails every MLflow call: the run would end with rc 0 and track nothing."""
    db = _half_migrated_store(tmp_path)

    result = relay("run", "pipelines/configs/smoke.yaml", workspace=tmp_path, timeout_s=600)

    _assert_half_made_message(result, db)
    assert not (tmp_path / "artifacts").exists(), "a refused run wrote its record"


def test_checking_a_store_with_runs_costs_no_mlflow_import(tmp_path: Path) -> None:
    """The check runs before every `relay run`; MLflow's schema head would import 1-1.5 s of MLflow on that path."""
    db = tmp_path / "mlflow.db"
    client, experiment_id = open_experiment(f"sqlite:///{db}", "relay", None)
    client.create_run(experiment_id)
    script = (
        "import sys\nfrom pathlib import Path\nfrom orchestrator.tracking.common import half_made_store_problem\n"
        f"print(half_made_store_problem(Path({str(db)!r})), 'mlflow.store.db.utils' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["None", "False"], done.stdout + done.stderr
