"""What the tracker is told of each stage that ended, and the local copies of a remote store's files it needs.

The runner decides a stage's outcome; this puts it in the one ``StageRecord`` the runner hands
its ``Tracker`` (``records.py``): metrics, step series, extra files and outputs for a finished
stage (a cache hit too), the error and the stored traceback for a failed one. MLflow logs local
files only, so a file of a remote store is first copied to ``copies_dir``, or to a folder of the
reports' own that ``remove_own_copies`` removes once the run ended, however it ended.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.dag import Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import RunStatus
from orchestrator.engine.manifests import Manifest
from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.errors import ArtifactError
from orchestrator.names import sanitize

logger = logging.getLogger(__name__)


class StageReports:
    """The records of how each stage ended, with local copies of the files the tracker must upload.

    ``copies_dir`` is where files of a remote store are copied for the tracker to upload; the
    caller removes it once the tracker is done. Without one, a folder of its own is made when a
    file is first copied, which the runner removes when the run ends (``remove_own_copies``): a
    tracker must then be done with a file when its ``stage_finished`` returns. Nothing there is
    needed after the run: the store holds the originals.
    """

    def __init__(self, store: ArtifactStore, copies_dir: Path | None = None) -> None:
        self.store = store
        self.copies_dir = None if copies_dir is None else Path(copies_dir)
        self._own_copies: Path | None = None  # the folder of copies made here, removed after the run

    def finished(
        self, run_id: str, stage: Stage, manifest: Manifest, cache_hit: bool, duration_s: float
    ) -> StageRecord:
        """A stage that finished (``cache_hit``: by its stored outputs) with what it measured and stored."""
        return self._record(
            stage,
            manifest.fingerprint,
            RunStatus.FINISHED,
            cache_hit=cache_hit,
            metrics=dict(manifest.metrics),
            series=list(manifest.series),
            files=self._local_files(run_id, stage.name, manifest.files),
            duration_s=duration_s,
            inputs=tuple(stage.inputs),
            input_roles=dict(stage.input_roles),
            outputs=self._tracked_outputs(run_id, stage, manifest),
        )

    def failed(self, run_id: str, stage: Stage, fingerprint: str, message: str, traceback: str | None) -> StageRecord:
        """A stage's final failure, with its traceback as a file where the run record keeps one (``traceback``)."""
        files = self._traceback_file(run_id, stage.name, traceback)
        return self._record(stage, fingerprint, RunStatus.FAILED, error=message, files=files)

    def remove_own_copies(self) -> None:
        """Remove the folder of copies made here (no ``copies_dir`` given), once the run ended.

        Why: it was left to the OS, and /tmp filled with relay-copies-* folders, one a run, that nothing
        cleans until a reboot. The next run makes a new one.
        """
        if self._own_copies is not None:
            shutil.rmtree(self._own_copies, ignore_errors=True)
            self.copies_dir = self._own_copies = None

    def _traceback_file(self, run_id: str, stage_name: str, relative: str | None) -> dict[str, str]:
        """The stored traceback as a file for the tracker (MLflow keeps it with the stage's run); none when it was
        not stored, or a remote store would not give it back: the stage's failure is what the run must say."""
        if relative is None:
            return {}
        try:
            return self._local_files(run_id, stage_name, {"traceback.txt": relative})
        except ArtifactError as exc:
            logger.warning("the tracker does not get %s's traceback: %s", stage_name, exc)
            return {}

    def traceback_location(self, relative: str | None) -> str | None:
        """Where a user finds a stored traceback: its local path, or its URI on a remote store."""
        return None if relative is None else self.store.shown(relative)

    def _record(self, stage: Stage, fingerprint: str, status: RunStatus, **fields: Any) -> StageRecord:
        """How a stage ended, for the tracker (FINISHED, possibly as a cache hit, or FAILED)."""
        return StageRecord(
            stage=stage.name,
            generation=stage.generation,
            fingerprint=fingerprint,
            status=status,
            cache_hit=fields.pop("cache_hit", False),
            **fields,
        )

    def _tracked_outputs(self, run_id: str, stage: Stage, manifest: Manifest) -> dict[str, TrackedArtifact]:
        """The stage's stored outputs for lineage tracking; models get a local copy when the store is remote."""
        tracked = {}
        for name, ref in manifest.outputs.items():
            kind = stage.lineage.get(name)
            local = self.store.local_path(ref.path)
            if local is None and kind == "model":
                local = self._copy_out(run_id, stage.name, Path(ref.path).name, ref.path)
            tracked[name] = TrackedArtifact(
                name=name,
                uri=self.store.location(ref.path),
                digest=ref.digest,
                kind=ref.kind,
                lineage=kind,
                local_path=None if local is None else str(local),
                meta=dict(ref.meta),
            )
        return tracked

    def _local_files(self, run_id: str, stage_name: str, stored: Mapping[str, str]) -> dict[str, str]:
        """Local paths of a stage's extra files (``manifest.files``: name -> path in the store), copied out of a
        remote store when needed."""
        files: dict[str, str] = {}
        for name, relative in stored.items():
            path = self.store.local_path(relative)
            if path is None:
                path = self._copy_out(run_id, stage_name, sanitize(name), relative)
            files[name] = str(path)
        return files

    def _copy_out(self, run_id: str, stage_name: str, file_name: str, relative: str) -> Path:
        """A stored file copied from a remote store to ``<copies_dir>/<run_id>/<stage>/``, for MLflow to log."""
        if self.copies_dir is None:  # a caller that did not say where: a folder of its own, removed after the run
            self.copies_dir = self._own_copies = Path(tempfile.mkdtemp(prefix="relay-copies-"))
            logger.debug("copies of remote files for tracking go to %s", self.copies_dir)
        path = self.copies_dir / run_id / sanitize(stage_name) / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.store.read_bytes(relative))
        return path
