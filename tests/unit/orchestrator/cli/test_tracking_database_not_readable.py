"""A tracking database (WS/mlflow.db) this user may not open is named with the fix that applies, exit 2.

Before: `'WS/mlflow.db' cannot be a database file ([Errno 13] Permission denied: ...); use sqlite:///PATH/mlflow.db`,
which sent the user to rename a database that was fine. The permission error is real (``_refused_without_read``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.orchestrator.cli.test_store_not_readable import _refused_without_read, _store


@pytest.mark.parametrize("argv", [["generations", "r1"], ["ui", "--port", "1"]], ids=lambda argv: argv[0])
def test_a_tracking_database_the_user_may_not_open_says_so(tmp_path: Path, argv: list[str]) -> None:
    workspace = tmp_path / "ws"
    _store(workspace)
    database = workspace / "mlflow.db"
    database.write_bytes(b"SQLite format 3\x00")
    err = _refused_without_read(argv, workspace, database)
    assert (
        f"this user may not open the tracking database {database} (permission denied, on the file or a folder "
        "above it); MLflow reads and writes it: give this user access (chmod u+rw on the file, u+rwx on its "
        "folders), or point the tracking store at another file"
    ) in err, err
    assert "use sqlite:///PATH/mlflow.db" not in err
