"""A data-parallel stage (2 Ray Train workers) whose store is S3, against a real moto server.

Ray Train writes the stage's in-stage checkpoints itself. It used to open its own filesystem for the
store's URI, with S3's timeouts unset, so a checkpoint to a store that stopped answering waited without
bound while every other write of the run gave up within Relay's bound. The stage now hands Ray the
store's filesystem with Relay's timeouts; this checks the run works through it end to end on real
workers: checkpoints written mid-stage, the model stored, the Train run's files removed after.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs
import pytest
from moto.server import ThreadedMotoServer

from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.engine import filesystems
from orchestrator.engine.artifacts import TRAIN_DIR, ArtifactStore
from orchestrator.engine.ray_executor import RayExecutor
from orchestrator.engine.records import NullTracker
from orchestrator.engine.runner import Runner
from orchestrator.engine.train_run import train_storage
from pipelines.builders import crest
from tests.integration.test_data_parallel import SMOKE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on a free port with an empty bucket ``bucket``; its ``host:port``."""
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"127.0.0.1:{port}"
        pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True).create_dir("bucket")
        yield endpoint
    finally:
        server.stop()


def options(filesystem: pafs.FileSystem) -> dict[str, Any]:
    _, (values,) = filesystem.__reduce__()
    return values


def test_ray_train_gets_the_stores_filesystem_with_relays_timeouts(s3_endpoint: str) -> None:
    store = f"s3://bucket/relay?endpoint_override={s3_endpoint}&scheme=http"
    path, filesystem = train_storage(store)
    assert path == f"bucket/relay/{TRAIN_DIR}"
    assert isinstance(filesystem, pafs.S3FileSystem)
    values = options(filesystem)
    assert values["request_timeout"] == filesystems.REQUEST_TIMEOUT_S
    assert values["connect_timeout"] == filesystems.CONNECT_TIMEOUT_S
    assert values["endpoint_override"] == s3_endpoint
    assert train_storage("/data/relay") == (f"/data/relay/{TRAIN_DIR}", None)


def test_a_two_worker_stage_checkpoints_to_s3_stores_its_model_and_removes_its_train_run(s3_endpoint: str) -> None:
    store = f"s3://bucket/relay?endpoint_override={s3_endpoint}&scheme=http"
    overrides = ["train.steps=12", "train.checkpoint_every=4", "resources.train.workers=2", "label.shard_size=64"]
    config = validate_config(crest.CrestConfig, apply_overrides(load_yaml(SMOKE), overrides))
    executor = RayExecutor(num_cpus=2)
    try:
        runner = Runner(ArtifactStore(store), executor, NullTracker(), "v1", seed=0)
        summary = runner.run(crest.build(config), "s3-data-parallel", stop_after="g00/train")
    finally:
        executor.shutdown()
    manifest = summary.manifests["g00/train"]
    assert manifest.metrics["steps"] == 12
    state = ArtifactStore(store).load(next(iter(manifest.outputs.values())))
    assert state["state_dict"], "the stored model has no weights"
    s3 = pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http")
    left = s3.get_file_info(pafs.FileSelector(f"bucket/relay/{TRAIN_DIR}", allow_not_found=True, recursive=True))
    assert [info.path for info in left if info.type == pafs.FileType.File] == []
