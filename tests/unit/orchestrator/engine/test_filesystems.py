"""An S3 store's filesystem: Relay's timeouts, and every option ``from_uri`` resolved kept (no network needed)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from orchestrator.engine import filesystems
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.filesystems import filesystem_from_uri


def options(filesystem: pafs.FileSystem) -> dict:
    """The options an S3 filesystem was built with, as pyarrow reports them."""
    _, (found,) = filesystem.__reduce__()
    return found


@pytest.fixture(autouse=True)
def no_shell_store_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_an_s3_store_gets_the_documented_timeouts() -> None:
    """Before: both were unset (-1), and a store that stopped answering held a run until it answered again."""
    filesystem, path = filesystem_from_uri("s3://bucket/relay?endpoint_override=127.0.0.1:9000&scheme=http")
    assert isinstance(filesystem, pafs.S3FileSystem) and path == "bucket/relay"
    found = options(filesystem)
    assert (found["connect_timeout"], found["request_timeout"]) == (10.0, 30.0)
    assert (filesystems.CONNECT_TIMEOUT_S, filesystems.REQUEST_TIMEOUT_S, filesystems.ATTEMPTS) == (10.0, 30.0, 3)


def test_the_uri_s_endpoint_region_credentials_and_bucket_creation_are_kept() -> None:
    uri = "s3://key:secret@bucket/relay?endpoint_override=store:9000&scheme=http&region=eu-west-1&allow_bucket_creation=true"
    found = options(filesystem_from_uri(uri)[0])
    expected = options(pafs.FileSystem.from_uri(uri)[0])
    assert found == {**expected, "connect_timeout": 10.0, "request_timeout": 30.0}
    assert (found["endpoint_override"], found["scheme"], found["region"]) == ("store:9000", "http", "eu-west-1")
    assert (found["access_key"], found["secret_key"], found["allow_bucket_creation"]) == ("key", "secret", True)


def test_the_endpoint_of_aws_endpoint_url_is_kept_and_credentials_stay_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    found = options(filesystem_from_uri("s3://bucket/relay")[0])
    assert found["endpoint_override"] == "http://127.0.0.1:9000"
    assert found["access_key"] is None and not found["anonymous"]  # the environment's or the profile's, as before


def test_a_local_store_is_left_as_from_uri_makes_it(tmp_path: Path) -> None:
    filesystem, path = filesystem_from_uri(tmp_path.as_uri())
    assert isinstance(filesystem, pafs.LocalFileSystem) and path == str(tmp_path)


def test_the_artifact_store_and_its_bad_uri_error_are_unchanged(tmp_path: Path) -> None:
    store = ArtifactStore("s3://bucket/relay?endpoint_override=127.0.0.1:9000&scheme=http")
    assert options(store._fs)["request_timeout"] == 30.0
    with pytest.raises(ValueError):
        ArtifactStore("nosuchscheme://bucket/relay")
