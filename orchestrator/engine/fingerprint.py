"""What identifies a stage's outputs: its fingerprint, its seed, and the version of the code behind it.

A stage whose fingerprint has a complete manifest in the store is a cache hit, so everything
that can change a stage's outputs goes into the fingerprint (name, function, params, declared
outputs, input digests, code version, seed) and nothing else (not its resources nor its
generation number), so a stage moved to more workers is still cached.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from orchestrator.dag import Stage

CODE_VERSION_CHARS = 16


def _canonical(value: Any) -> Any:
    """JSON fallback for params: typed settings as their JSON dump, sets sorted, paths and enums as text.

    Stage params hold the config's typed sections (pydantic models, validated once at the edge);
    their ``model_dump(mode="json")`` is what identifies them.
    """
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (Path, Enum)):
        return str(value.value if isinstance(value, Enum) else value)
    raise TypeError(f"{type(value).__name__} is not JSON-able; stage params must be plain config values")


def fingerprint(stage: Stage, input_digests: Mapping[str, str], code_version: str, seed: int = 0) -> str:
    """sha256 of what determines a stage's outputs: name, function, params, code, inputs, seed."""
    payload = {
        "stage": stage.name,
        "fn": f"{getattr(stage.fn, '__module__', '?')}.{getattr(stage.fn, '__qualname__', repr(stage.fn))}",
        "params": stage.params,
        "outputs": list(stage.outputs),
        "inputs": dict(sorted(input_digests.items())),
        "code_version": code_version,
        "seed": seed,
    }
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_canonical)
    except TypeError as exc:
        raise TypeError(f"stage {stage.name!r}: cannot fingerprint its params: {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()


def stage_seed(seed: int, stage_name: str) -> int:
    """A per-stage seed: stages draw independent streams, and a rerun draws the same one."""
    return int(hashlib.sha256(f"{seed}:{stage_name}".encode()).hexdigest()[:8], 16)


def code_version(package_dir: Path) -> str:
    """Digest of every ``*.py`` file under ``package_dir``: a code change invalidates cached stage outputs.

    The caller names the directory (the package that defines a pipeline), so the engine
    digests whatever code a pipeline comes from without knowing which package that is.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(package_dir).rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:CODE_VERSION_CHARS]
