"""A test's moto S3 server holds no bucket or object another test of the same process left there.

Why: moto's in-process servers share one backend per process, so on one pytest-xdist worker a test
saw what the tests before it wrote, whether it shared their server (this folder's module-scoped
one, tests/unit/orchestrator/cli/conftest.py) or started its own on a new port (``moto`` of
tests/integration/test_store_failures.py). tests/conftest.py now resets moto before each test.
Each check runs twice and leaves objects behind each time: without the reset, whichever of the
two runs second (in any order) finds the first one's leftovers.
"""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from tests.integration.test_store_failures import Moto, moto  # noqa: F401  (moto: the S3 server fixture)


def everything(fs: pafs.S3FileSystem) -> list[str]:
    """Every bucket and object the server holds."""
    return sorted(info.path for info in fs.get_file_info(pafs.FileSelector("", recursive=True)))


def leave_a_run(fs: pafs.S3FileSystem, bucket: str) -> None:
    """What an earlier run leaves in a store: a ledger under ``runs/run-1``."""
    fs.create_dir(bucket)
    with fs.open_output_stream(f"{bucket}/relay/runs/run-1/ledger.json") as stream:
        stream.write(b"{}")


@pytest.mark.parametrize("turn", [1, 2])
def test_the_modules_shared_server_holds_nothing_an_earlier_test_wrote(s3: pafs.S3FileSystem, turn: int) -> None:
    assert everything(s3) == []
    leave_a_run(s3, f"left-by-{turn}")


@pytest.mark.parametrize("turn", [1, 2])
def test_a_tests_own_server_holds_only_the_bucket_its_fixture_made(moto: Moto, turn: int) -> None:  # noqa: F811
    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{moto.port}", scheme="http", allow_bucket_creation=True)
    assert everything(fs) == ["bucket"]
    leave_a_run(fs, "bucket")
    leave_a_run(fs, f"left-by-{turn}")
