"""A run's claims on the stages it computes, so two runs never compute one stage at the same time.

Why: a stage's folder (``stages/FINGERPRINT/``) is a cache shared by every run whose stage
fingerprints the same, and the trials of a sweep share their first generation's stages. Trials
started together each found no manifest and each trained the same ``g00/train``: three times
the compute for one result, written three times into one folder, where a twin's write removes the
manifest before writing it again and its end clears the scratch space the others checkpoint into.
Now a run claims a stage before computing it and holds the claim until the stage has settled
(its retries included); another run that finds the stage claimed waits for it (``Runner``), then
takes the result as a cache hit, or computes the stage itself if the twin failed or stopped.

A claim is a ``flock`` on the stage's folder (``folder_lock``): nothing is written for it, and
the kernel lets it go when the run ends, however it ends (a SIGKILL'd run leaves no stage claimed).
An object store (S3) has no such lock, so there stages are not claimed and twins compute as
before; the same goes for a folder the filesystem will not lock (some network mounts).
"""

from __future__ import annotations

import contextlib
import logging

from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.folder_lock import FolderHeld, folder_locked

logger = logging.getLogger(__name__)


class StageClaims:
    """The stages one run holds claimed in one store, by fingerprint."""

    def __init__(self, store: ArtifactStore) -> None:
        self._store = store
        self._held: dict[str, contextlib.ExitStack] = {}

    def take(self, fingerprint: str) -> bool:
        """Claim the stage of ``fingerprint`` for this run; False when another run holds it.

        True as well where no claim can be taken (an object store, a folder that cannot be made or
        locked): the stage is then computed unclaimed, as it was before claims.
        """
        if fingerprint in self._held:
            return True
        folder = self._store.local_path(self._store.stage_dir(fingerprint))
        if folder is None:
            return True
        claim = contextlib.ExitStack()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            claim.enter_context(folder_locked(folder))
        except FolderHeld:
            return False
        except OSError as exc:
            logger.debug("stage %s computed unclaimed: its folder cannot be locked (%s)", fingerprint[:12], exc)
            return True
        self._held[fingerprint] = claim
        return True

    def release(self, fingerprint: str) -> None:
        """Let the claim go: the stage settled (done, or failed for good). A stage never claimed is ignored."""
        claim = self._held.pop(fingerprint, None)
        if claim is not None:
            claim.close()

    def release_all(self) -> None:
        """Let every claim go: the run ended, however it ended."""
        for fingerprint in list(self._held):
            self.release(fingerprint)
