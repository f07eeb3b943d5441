"""The runner removes the folder it made for copies of a remote store's files once the run ends, however it ends.

Why: with no ``copies_dir`` from its caller the folder was "left to the OS", and /tmp filled with
relay-copies-* folders, one a run, that nothing cleaned until a reboot. The store is a real S3 server (moto).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.dag import Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.runner import Runner, RunStatus
from orchestrator.errors import StageError
from tests.integration.test_store_failures import Moto, moto  # noqa: F401  (moto: the S3 server fixture)
from tests.unit.orchestrator.engine.toy import RecordingTracker, bad_value, toy


@pytest.fixture
def remote_store(moto: Moto) -> ArtifactStore:  # noqa: F811
    """An artifact store on moto's S3 server (its bucket made by the fixture): files are copied out of it."""
    return ArtifactStore(moto.uri("bucket/relay"))


class CopyCheckingTracker(RecordingTracker):
    """Remembers each stage's files, after checking each is there when the runner hands it over; ``stop_at``:
    the stage whose record interrupts the run (Ctrl-C), once its files were copied."""

    def __init__(self, stop_at: str | None = None) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.copies: list[Path] = []

    def stage_finished(self, record) -> None:
        super().stage_finished(record)
        for path in map(Path, record.files.values()):
            assert path.is_file(), path
            self.copies.append(path)
        if record.stage == self.stop_at:
            raise KeyboardInterrupt


def copies_folders(tracker: CopyCheckingTracker) -> set[Path]:
    """The runner's folders the copies went to (``<folder>/<run_id>/<stage>/<file>``)."""
    assert tracker.copies, "no file was copied out of the store"
    return {path.parents[2] for path in tracker.copies}


def test_a_finished_run_removes_its_folder_of_copies(remote_store: ArtifactStore) -> None:
    tracker = CopyCheckingTracker()
    assert Runner(remote_store, LocalExecutor(), tracker, "v1", 0).run(toy(), "run-1").status is RunStatus.FINISHED
    assert all(folder.name.startswith("relay-copies-") and not folder.exists() for folder in copies_folders(tracker))


def test_a_failed_run_removes_its_folder_of_copies(remote_store: ArtifactStore) -> None:
    tracker = CopyCheckingTracker()
    failing = toy(extra=(Stage("g00/check", bad_value, ("report",), ("checked",), generation=0),))
    with pytest.raises(StageError):
        Runner(remote_store, LocalExecutor(), tracker, "v1", 0).run(failing, "run-1")
    assert not any(folder.exists() for folder in copies_folders(tracker))


def test_an_interrupted_run_removes_its_folder_of_copies(remote_store: ArtifactStore) -> None:
    tracker = CopyCheckingTracker(stop_at="g00/evaluate")
    with pytest.raises(KeyboardInterrupt):
        Runner(remote_store, LocalExecutor(), tracker, "v1", 0).run(toy(), "run-1")
    assert not any(folder.exists() for folder in copies_folders(tracker))


def test_a_folder_of_copies_the_caller_gave_is_left_to_the_caller(remote_store: ArtifactStore, tmp_path: Path) -> None:
    tracker = CopyCheckingTracker()
    Runner(remote_store, LocalExecutor(), tracker, "v1", 0, copies_dir=tmp_path / "copies").run(toy(), "run-1")
    assert copies_folders(tracker) == {tmp_path / "copies"} and all(path.is_file() for path in tracker.copies)


def test_a_second_run_of_the_runner_copies_into_a_folder_of_its_own(remote_store: ArtifactStore) -> None:
    first, second = CopyCheckingTracker(), CopyCheckingTracker()
    runner = Runner(remote_store, LocalExecutor(), first, "v1", 0)
    runner.run(toy(), "run-1")
    runner.tracker = second
    assert runner.run(toy(lr=0.25), "run-2").status is RunStatus.FINISHED
    assert not any(folder.exists() for folder in copies_folders(first) | copies_folders(second))
