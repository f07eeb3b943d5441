"""The run's ledger: ``<runs_dir>/<run_id>/ledger.json``, the state of every stage on local disk.

Rewritten after every change of a stage's state, atomically (a temporary file renamed into
place), so a run killed at any moment leaves a readable record of how far it got, which is
what `relay resume`, `relay runs` and a person debugging a failure read. It names the driver
(host and pid), so a run whose driver died is told apart from one still running.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Ledger:
    """The run's record of stage states on local disk, rewritten atomically."""

    path: Path
    pipeline: str
    run_id: str
    code_version: str | Mapping[str, str]
    seed: int
    stop_after: str | None
    generations: Mapping[int, int] = field(default_factory=dict)  # generation -> its number of stages
    started: str = ""

    def __post_init__(self) -> None:
        """A resumed run keeps the start time its first attempt recorded."""
        earlier = read_ledger(self.path)
        self.started = self.started or (earlier or {}).get("started") or _now()

    def write(self, status: str, stages: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the ledger with the run's ``status`` and each stage's entry (state, fingerprint, ...)."""
        data = {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": status,
            "code_version": self.code_version,
            "seed": self.seed,
            "stop_after": self.stop_after,
            "generations": {str(g): n for g, n in sorted(self.generations.items())},
            "started": self.started,
            "updated": _now(),
            "driver": {"host": socket.gethostname(), "pid": os.getpid()},
            "stages": {name: dict(entry) for name, entry in stages.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(temp, self.path)


def read_ledger(path: Path) -> dict[str, Any] | None:
    """A ledger's content, or None when there is none (yet) or it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
