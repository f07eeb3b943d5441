"""Checkpoints: dicts of tensors and plain values stored as bytes that torch reads back safely, and a
stage's in-stage checkpoints kept in its scratch space.

Every checkpoint is written by ``torch.save`` and read by ``torch.load(weights_only=True)``, so a
value that could not be read back that way is refused when it is written, naming its key, rather
than when a later stage loads it. Apart from the artifact store, which keeps the bytes: this is
the one module of the store that needs torch, and it imports it on first use.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.errors import ArtifactError

logger = logging.getLogger(__name__)

_PLAIN = (bool, int, float, str, type(None))


class ScratchSpace(Protocol):
    """A stage's scratch space in the store (``ArtifactStore``): files an attempt leaves for the next."""

    def write_scratch(self, fingerprint: str, name: str, data: bytes) -> None: ...

    def read_scratch(self, fingerprint: str, name: str) -> bytes | None: ...


@dataclass
class StoreCheckpointer:
    """In-stage checkpoints of a single-process stage, kept in the stage's scratch space.

    The store is shared by every node, so a retried attempt on another
    worker finds the checkpoint of the one that died. Loads use
    ``weights_only=True`` like every other checkpoint.
    """

    store: ScratchSpace
    fingerprint: str
    name: str = "checkpoint.pt"

    def save(self, state: dict[str, Any], step: int) -> None:
        _check_checkpoint(self.name, state, "checkpoint")
        buffer = io.BytesIO()
        _torch().save(state, buffer)
        self.store.write_scratch(self.fingerprint, self.name, buffer.getvalue())
        logger.debug("checkpoint of %s at step %d", self.fingerprint[:12], step)

    def load(self) -> dict[str, Any] | None:
        data = self.store.read_scratch(self.fingerprint, self.name)
        if data is None:
            return None
        try:
            return load_checkpoint(data)
        except Exception as exc:  # a torn or foreign file: start the stage over rather than fail it
            logger.warning("ignoring unreadable checkpoint of %s (%s); starting over", self.fingerprint[:12], exc)
            return None

    def save_part(self, index: int, data: bytes) -> None:
        """One part file per index, renamed into place whole: a part that is there is complete."""
        self.store.write_scratch(self.fingerprint, part_name(index), data)

    def load_part(self, index: int) -> bytes | None:
        return self.store.read_scratch(self.fingerprint, part_name(index))


def part_name(index: int) -> str:
    """The scratch file of a stage's part ``index`` (``StageContext.save_part``): zero-padded, so they list in order."""
    if index < 0:
        raise ValueError(f"part index must be >= 0, got {index}")
    return f"part-{index:08d}"


def serialize_checkpoint(name: str, value: Any) -> tuple[str, str, bytes]:
    """(kind, suffix, bytes) of a checkpoint; tables never get here (the store streams them to Parquet)."""
    if isinstance(value, dict):
        _check_checkpoint(name, value, name)
        buffer = io.BytesIO()
        _torch().save(value, buffer)
        return "checkpoint", "pt", buffer.getvalue()
    raise ArtifactError(
        name,
        f"unsupported output type {type(value).__name__}; expected a pyarrow.Table, a pyarrow.RecordBatchReader "
        "or a dict of tensors/plain values",
        retryable=False,
    )


def load_checkpoint(data: bytes) -> Any:
    """A checkpoint's bytes read back on the CPU, with ``weights_only=True`` like every other checkpoint."""
    return _torch().load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _torch() -> Any:
    """torch, imported on the first checkpoint read or write.

    Why lazily: the driver validates configs, builds the DAG and reads manifests and tables,
    none of which needs torch; importing it cost the CLI 3 s (10 s on loaded cores) before
    anything else could start (tests/unit/pipelines/test_driver_imports.py).
    """
    import torch

    return torch


def _torch_leaves() -> tuple[type, ...]:
    torch = _torch()
    return (torch.Tensor, torch.dtype, torch.Size)


def _check_checkpoint(name: str, value: Any, where: str) -> None:
    """Refuse values torch.load(weights_only=True) could not read back, naming the key."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ArtifactError(name, f"{where}: key {key!r} must be str or int", retryable=False)
            _check_checkpoint(name, item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_checkpoint(name, item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN + _torch_leaves()):
        raise ArtifactError(
            name,
            f"{where} is a {type(value).__name__}, which torch.load(weights_only=True) cannot read; "
            "store tensors, numbers, strings, lists or dicts (e.g. model.state_dict())",
            retryable=False,
        )
