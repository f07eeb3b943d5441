"""The run's ledger: ``<runs_dir>/<run_id>/ledger.json``, the state of every stage on local disk.

Rewritten after every change of a stage's state, atomically (a temporary file renamed into
place), so a run killed at any moment leaves a readable record of how far it got, which is
what `relay resume` and a person debugging a failure read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Ledger:
    """The run's record of stage states on local disk, rewritten atomically."""

    path: Path
    pipeline: str
    run_id: str
    code_version: str
    seed: int
    stop_after: str | None

    def write(self, status: str, stages: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the ledger with the run's ``status`` and each stage's entry (state, fingerprint, ...)."""
        data = {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": status,
            "code_version": self.code_version,
            "seed": self.seed,
            "stop_after": self.stop_after,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "stages": {name: dict(entry) for name, entry in stages.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(temp, self.path)
