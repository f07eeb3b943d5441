"""Digits imported as shards, through the real CLI.

A pipeline's results must not depend on which path fed it: the same config runs on the bundled
in-memory digits and on `relay data import digits` shards, and every stage reports the same
metrics (the batches are identical, so the numbers are too). Shards on an S3 server, read by
the stages on other Ray nodes, are the cluster tier's (tests/cluster/test_scale_out.py). A shard changed after the import fails the
run at its first stage, naming the shard, with nothing stored for that stage: that run is on a local Ray instance
(the error crosses from a Ray worker to the driver's message); the others run their stages in-process, where which
data fed the metrics and the cache is the point, not Ray (each Ray start cost about 8 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.relay_cli import ROOT, manifests, relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")
OVERRIDES = ["train.steps=20", "crest.generations=2", "train.report_every=10"]
IN_PROCESS = "run.executor=local"


def stage_metrics(workspace: Path) -> dict[str, dict[str, float]]:
    return {stage: manifest["metrics"] for stage, manifest in manifests(workspace).items()}


def run(workspace: Path, *overrides: str) -> dict[str, dict[str, float]]:
    result = relay("run", SMOKE, *OVERRIDES, IN_PROCESS, *overrides, workspace=workspace, timeout_s=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return stage_metrics(workspace)


def import_digits(dest: str, workspace: Path) -> None:
    result = relay("data", "import", "digits", dest, workspace=workspace)
    assert result.returncode == 0, result.stderr[-3000:]


def assert_same_metrics(expected: dict[str, dict[str, float]], got: dict[str, dict[str, float]]) -> None:
    assert set(got) == set(expected) and len(expected) == 7  # split + 2 x (train, evaluate) + pseudo_label, rebalance
    for stage, metrics in expected.items():
        assert got[stage] == pytest.approx(metrics, rel=1e-6, abs=1e-9), stage


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    return run(tmp_path_factory.mktemp("memory"))


def test_shards_on_disk_give_the_in_memory_metrics(in_memory, tmp_path: Path) -> None:
    dest = tmp_path / "digits"
    import_digits(str(dest), tmp_path)
    got = run(tmp_path / "ws", "data.name=parquet", f"data.uri={dest}")
    assert_same_metrics(in_memory, got)
    assert 0.0 < got["g01/evaluate"]["balanced_accuracy"] <= 1.0


def test_a_shard_changed_after_the_import_fails_the_first_stage_naming_it(tmp_path: Path) -> None:
    dest = tmp_path / "digits"
    import_digits(str(dest), tmp_path)
    shard = dest / "train" / "part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a pixel: same size, so only the digest can tell
    shard.write_bytes(bytes(data))
    result = relay("run", SMOKE, *OVERRIDES, "data.name=parquet", f"data.uri={dest}", workspace=tmp_path / "ws")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "train/part-00000.parquet: sha256" in result.stderr and "re-import the dataset" in result.stderr
    assert stage_metrics(tmp_path / "ws") == {}, "a failed stage stores nothing"


def test_a_dataset_imported_again_at_the_same_uri_misses_the_old_ones_cache(tmp_path: Path) -> None:
    """The cache keys shards by their digest (pinned from the manifest), not by the URI they sit at."""
    dest, workspace = tmp_path / "data", tmp_path / "ws"
    split_only = ["data.name=parquet", f"data.uri={dest}", IN_PROCESS, "--stop-after", "data/split"]
    import_digits(str(dest), tmp_path)
    first = relay("run", SMOKE, *OVERRIDES, *split_only, "--run-id", "first", workspace=workspace)
    assert first.returncode == 0, first.stderr[-3000:]
    for path in sorted(dest.rglob("*"), reverse=True):  # deleted, as the import's own message suggests
        path.unlink() if path.is_file() else path.rmdir()
    result = relay("data", "import", "synthetic", str(dest), workspace=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    second = relay("run", SMOKE, *OVERRIDES, *split_only, "--run-id", "second", workspace=workspace)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "cache hit" not in second.stdout + second.stderr
    saved = [(workspace / "artifacts" / "runs" / run / "config.yaml").read_text() for run in ("first", "second")]
    digests = [
        line.split(":", 1)[1].strip()
        for text in saved
        for line in text.splitlines()
        if line.strip().startswith("digest:")
    ]
    assert len(digests) == 2 and digests[0] != digests[1]  # each run's record names the dataset it read


def test_a_copy_of_a_dataset_at_another_uri_is_the_same_data_to_the_cache(tmp_path: Path) -> None:
    """The cache keys a pinned dataset by its digest, not by where it lives: a copy (to S3, onto a cluster's
    mount) reuses every stage computed from the original. Before the fix, local, copied and S3 copies of one dataset got
    a data/split each, and every stage after it ran again."""
    original, copy, workspace = tmp_path / "data", tmp_path / "elsewhere" / "data", tmp_path / "ws"
    import_digits(str(original), tmp_path)
    copied = relay("data", "import", str(original), str(copy), workspace=tmp_path)
    assert copied.returncode == 0, copied.stderr[-3000:]
    up_to_train = [*OVERRIDES, "data.name=parquet", IN_PROCESS, "--stop-after", "g00/train"]
    first = relay("run", SMOKE, *up_to_train, f"data.uri={original}", "--run-id", "first", workspace=workspace)
    assert first.returncode == 0, first.stderr[-3000:]
    second = relay("run", SMOKE, *up_to_train, f"data.uri={copy}", "--run-id", "second", workspace=workspace)
    assert second.returncode == 0, second.stderr[-3000:]
    output = second.stdout + second.stderr
    assert "skip data/split: cache hit" in output and "skip g00/train: cache hit" in output, output[-3000:]
    saved = (workspace / "artifacts" / "runs" / "second" / "config.yaml").read_text()
    assert str(copy) in saved, "the run's record still names the copy it read"
