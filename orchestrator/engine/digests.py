"""Digests of stored bytes: xxh3-128 for what is written now, sha256 still checked for older manifests.

Why xxh3-128 (the xxhash package) and not sha256: the digest guards against truncated or
altered files and keys the fingerprints of downstream stages; nobody forges stage outputs, so
a cryptographic hash buys nothing here. sha256 ran at 1.1-1.3 GB/s on the 2-core benchmark
machine, xxh3-128 at 8.7 GB/s; a cache hit re-reads and digests every output before it is
trusted (``ArtifactStore.verify``), and that re-read was all sha256 (0.36 s of CPU for a 384 MB
table, benchmarks/artifacts.py). 128 bits keep accidental collisions out of reach, and its
32 hex characters fit MLflow's 36-character dataset digest whole.

A manifest names the algorithm of each output (``ArtifactRef.algorithm``); manifests written
before it existed hold sha256 digests, which is what a missing name means, so stores made
by earlier versions still verify and stay cache hits.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import xxhash

ALGORITHM = "xxh3_128"
LEGACY = "sha256"  # what a manifest without an algorithm used
_HASHERS = {"xxh3_128": xxhash.xxh3_128, "sha256": hashlib.sha256}


class Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...

    def hexdigest(self) -> str: ...


def hasher(algorithm: str = ALGORITHM) -> Hasher:
    """A fresh incremental hasher; an unknown algorithm (a manifest from a newer Relay) raises ValueError."""
    try:
        return _HASHERS[algorithm]()
    except KeyError:
        raise ValueError(
            f"unknown digest algorithm {algorithm!r}; known: {', '.join(sorted(_HASHERS))}; "
            "the manifest was written by another Relay version: rerun the stage"
        ) from None


def digest_of(data: bytes | memoryview, algorithm: str = ALGORITHM) -> str:
    """The hex digest of ``data`` in one call."""
    h = hasher(algorithm)
    h.update(data)
    return h.hexdigest()
