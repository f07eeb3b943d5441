"""A labeling stage that is interrupted resumes after the shards it finished, with the same output.

The stage body runs as every executor runs it (``run_stage_body``: inputs from a real store, the
output streamed into real Parquet, the spills in the stage's scratch space). The first attempt is
cut short the way a lost worker cuts it: the shard mapper raises after some shards. The mapper
of the next attempt counts the rows it is given to label, so "labels only the rest" is counted,
not timed.
"""

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.dag import RESUMED_FROM_ROWS, Parallelism, Stage, StageContext, StageProgress, StageResult
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.body import Placement, run_stage_body
from orchestrator.engine.checkpoints import StoreCheckpointer, part_name
from orchestrator.engine.manifests import Manifest
from orchestrator.engine.task import StageTask
from pipelines.stages import pseudo_label
from tests.unit.pipelines.stages.test_pseudo_label import DATA, checkpoint, split_of

SHARD = 9
ROWS = 150  # 90 unlabeled rows: 10 shards of 9
UNLABELED = 90
FINGERPRINT = "e" * 64


class WorkerLost(RuntimeError):
    """What the first attempt dies of, after ``after`` shards."""


def interrupted_after(after: int) -> Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]:
    def mapper(fn: Callable[[Any], Any], shards: Iterable[Any]) -> Iterator[Any]:
        for done, shard in enumerate(shards):
            if done == after:
                raise WorkerLost(f"worker lost after {after} shards")
            yield fn(shard)

    return mapper


class CountingMapper:
    """Labels in order, counting the rows it was given: what this attempt labeled."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, fn: Callable[[Any], Any], shards: Iterable[Any]) -> Iterator[Any]:
        for shard in shards:
            self.rows += len(shard[0])
            yield fn(shard)


def stored_inputs(store: ArtifactStore) -> dict:
    split = store.write_stage("a" * 64, "split", StageResult(outputs={"split": split_of(ROWS)})).outputs["split"]
    model = store.write_stage("b" * 64, "train", StageResult(outputs={"model": checkpoint()})).outputs["model"]
    return {"split": split, "model": model}


def labeling_task(store: ArtifactStore, attempt: int = 1, progress: Any = None) -> StageTask:
    params = {
        "data": DATA,
        "batch_size": 16,
        "generation": 1,
        "shard_size": SHARD,
        "io": {"split": "split", "model": "model", "pseudo_labels": "pl"},
    }
    stage = Stage(
        "g01/pseudo_label",
        pseudo_label.pseudo_label_generation,
        ("split", "model"),
        ("pl",),
        params=params,
        generation=1,
        parallelism=Parallelism.SHARDS,
    )
    return StageTask(stage, FINGERPRINT, stored_inputs(store), store.uri, "run", 0, attempt, progress)


def uninterrupted(tmp_path: Path) -> Manifest:
    store = ArtifactStore(str(tmp_path / "uninterrupted"))
    manifest = run_stage_body(labeling_task(store), Placement())
    assert manifest is not None
    return manifest


def first_attempt_dies(store: ArtifactStore, after: int) -> None:
    with pytest.raises(WorkerLost):
        run_stage_body(labeling_task(store), Placement(shard_mapper=interrupted_after(after)))
    assert store.read_manifest(FINGERPRINT) is None


def scratch(store: ArtifactStore) -> Path:
    path = store.local_path(f"{store.stage_dir(FINGERPRINT)}/scratch")
    assert path is not None
    return path


def resumed(store: ArtifactStore, progress: Any = None) -> tuple[Manifest, int]:
    """The next attempt's manifest and the rows it labeled itself."""
    counting = CountingMapper()
    manifest = run_stage_body(labeling_task(store, 2, progress), Placement(shard_mapper=counting))
    assert manifest is not None
    return manifest, counting.rows


def same_output(a: Manifest, b: Manifest) -> bool:
    ref, other = a.outputs["pl"], b.outputs["pl"]
    return (ref.digest, ref.size) == (other.digest, other.size)


def test_a_resumed_attempt_labels_only_the_remaining_shards_and_writes_the_same_table(tmp_path):
    expected = uninterrupted(tmp_path)
    store = ArtifactStore(str(tmp_path / "store"))
    first_attempt_dies(store, after=4)
    assert sorted(p.name for p in scratch(store).iterdir()) == [part_name(i) for i in range(4)]
    shown: list[StageProgress] = []
    manifest, labeled = resumed(store, shown.append)
    assert labeled == UNLABELED - 4 * SHARD
    assert manifest.metrics[RESUMED_FROM_ROWS] == 4 * SHARD
    assert same_output(manifest, expected)
    assert store.load(manifest.outputs["pl"]).equals(store.load(expected.outputs["pl"]))
    assert {k: v for k, v in manifest.metrics.items() if k != RESUMED_FROM_ROWS} == {
        k: v for k, v in expected.metrics.items() if k != RESUMED_FROM_ROWS
    }
    counted = [p for p in shown if p.total is not None]
    assert counted[0].done == counted[0].initial == 4 * SHARD and counted[-1].done == UNLABELED
    assert not scratch(store).exists(), "the spilled shards go once the output is stored"


def test_an_uninterrupted_run_resumes_nothing(tmp_path):
    manifest = uninterrupted(tmp_path)
    assert manifest.metrics[RESUMED_FROM_ROWS] == 0
    assert manifest.metrics["rows"] == UNLABELED


def test_a_torn_spill_and_what_follows_it_are_labeled_again(tmp_path):
    expected = uninterrupted(tmp_path)
    store = ArtifactStore(str(tmp_path / "store"))
    first_attempt_dies(store, after=6)
    torn = scratch(store) / part_name(2)
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    manifest, labeled = resumed(store)
    assert labeled == UNLABELED - 2 * SHARD
    assert manifest.metrics[RESUMED_FROM_ROWS] == 2 * SHARD
    assert same_output(manifest, expected)


def test_a_spill_of_other_rows_is_not_replayed(tmp_path):
    """A part that does not hold its shard's ids (another split's, a foreign file) is labeled again."""
    expected = uninterrupted(tmp_path)
    store = ArtifactStore(str(tmp_path / "store"))
    first_attempt_dies(store, after=3)
    (scratch(store) / part_name(0)).write_bytes((scratch(store) / part_name(1)).read_bytes())
    manifest, labeled = resumed(store)
    assert labeled == UNLABELED
    assert same_output(manifest, expected)


def test_a_stage_rerun_on_request_starts_fresh(tmp_path):
    """`--rerun-from` / `--no-cache`: the runner drops the scratch space another run left (restart_progress)."""
    store = ArtifactStore(str(tmp_path / "store"))
    first_attempt_dies(store, after=5)
    store.restart_progress(FINGERPRINT, "g01/pseudo_label", "the-rerun")
    manifest, labeled = resumed(store)
    assert labeled == UNLABELED
    assert manifest.metrics[RESUMED_FROM_ROWS] == 0


def test_only_rank_0_keeps_parts(tmp_path):
    store = ArtifactStore(str(tmp_path))
    for rank in (1, 0):
        ctx = StageContext(
            run_id="r", stage="s", generation=None, seed=0, device="cpu", attempt=1, rank=rank, world_size=2
        )
        ctx.checkpointer = StoreCheckpointer(store, FINGERPRINT)
        ctx.save_part(0, b"rank %d" % rank)
    assert StoreCheckpointer(store, FINGERPRINT).load_part(0) == b"rank 0"
