"""The file names Relay stores stages and artifacts under, and the names a pipeline may not give two things.

Apart from the engine, which stores under these names, because the DAG refuses a pipeline whose
names would be stored as one (``file_name_clashes``) before anything runs, and the DAG imports
nothing of the engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def sanitize(name: str) -> str:
    """A file-name-safe version of an artifact name (``g00/model`` -> ``g00_model``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "artifact"


def file_name_clashes(names: Iterable[str]) -> list[tuple[str, ...]]:
    """The groups of distinct ``names`` that ``sanitize`` stores as one file name (``x/y`` and ``x_y``).

    Why: a stage with outputs ``x/y`` and ``x_y`` wrote both to ``x_y.parquet``; the second overwrote
    the first, a reader of ``x/y`` got the other table, and every later run recomputed the stage
    as "missing or corrupted".
    """
    stored: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        stored.setdefault(sanitize(name), []).append(name)
    return [tuple(group) for group in stored.values() if len(group) > 1]
