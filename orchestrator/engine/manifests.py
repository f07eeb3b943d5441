"""Manifests: the record that a stage finished, and the check that its stored bytes still match it.

A manifest names every output of a stage (where it is stored, its size and digest), its metrics,
step series and extra files; ``manifest.json`` is written last, so its being there means the
outputs are complete. Apart from the store because a manifest travels without one: executors
return it, a ``StageTask`` carries its refs, the runner and the tracker read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from orchestrator.engine.digests import LEGACY, digest_of, hasher

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArtifactRef:
    """Where one stored output lives and what its bytes hash to.

    ``path`` is relative to the store root, so a store can be moved or
    mounted elsewhere without rewriting manifests. ``algorithm`` names the
    digest's hash; manifests from before it existed used sha256.
    """

    name: str
    path: str
    kind: str  # "table" | "checkpoint"
    digest: str
    size: int
    algorithm: str = LEGACY
    # A checkpoint's plain top-level values (model name, classes, ...), so the driver can
    # describe a model without torch (importing torch in a Ray job's driver aborted it: seen).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The record that a stage finished: its outputs, metrics, step series and files."""

    stage: str
    fingerprint: str
    outputs: dict[str, ArtifactRef]
    metrics: dict[str, float] = field(default_factory=dict)
    series: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    file_digests: dict[str, str] = field(default_factory=dict)  # file name -> "ALGORITHM:HEX" (older manifests: none)
    created: str = ""
    duration_s: float = 0.0
    node: str = ""  # the Ray node id where the stage body ran (rank 0, or the pool's coordinator); "" locally


def manifest_to_json(manifest: Manifest) -> dict[str, Any]:
    """The manifest as ``manifest.json`` holds it (a series step as a list, which JSON has)."""
    data = asdict(manifest)
    data["series"] = [[step, values] for step, values in manifest.series]
    return data


def manifest_from_json(data: Mapping[str, Any]) -> Manifest:
    """A manifest read back; keys a manifest of an older Relay lacks take their defaults."""
    return Manifest(
        stage=data["stage"],
        fingerprint=data["fingerprint"],
        outputs={name: ArtifactRef(**ref) for name, ref in data["outputs"].items()},
        metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
        series=[(int(step), dict(values)) for step, values in data.get("series", [])],
        files=dict(data.get("files", {})),
        file_digests=dict(data.get("file_digests", {})),
        created=data.get("created", ""),
        duration_s=float(data.get("duration_s", 0.0)),
        node=str(data.get("node", "")),
    )


def output_intact(fs: pafs.FileSystem, path: str, ref: ArtifactRef) -> bool:
    """Whether the output stored at ``path`` still has the size and digest ``ref`` recorded."""
    try:
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File or info.size != ref.size:
            return False
        digest = hasher(ref.algorithm)
        with fs.open_input_stream(path) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except (OSError, pa.ArrowException, ValueError):  # ValueError: an algorithm this version does not know
        return False
    return digest.hexdigest() == ref.digest


def file_intact(fs: pafs.FileSystem, path: str, recorded: str) -> bool:
    """Whether the extra file at ``path`` is readable and matches ``recorded`` ("ALGORITHM:HEX"; older
    manifests recorded none, and then being readable is enough)."""
    algorithm, _, expected = recorded.partition(":")
    try:
        with fs.open_input_stream(path) as stream:
            data = stream.read()
        return not expected or digest_of(data, algorithm) == expected
    except (OSError, pa.ArrowException, ValueError):
        return False
