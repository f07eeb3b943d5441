"""A sharded dataset as a Relay dataset (`data.name: parquet`, `data.uri`): its labels, classes and checks.

Drawing the split needs only labels, so for a sharded dataset they come from the label column
alone (a few bytes a row, no image is read, no torch is imported): the driver checks a config
against the dataset before anything runs, and the split stage draws from the same labels. Rows
with an unknown (null) label are -1 here; the split puts them in the unlabeled pool.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from pipelines.data import DatasetLabels, default_flip, load_labels
from pipelines.datasets.checks import read_labels
from pipelines.datasets.shards import DatasetError, DatasetManifest, read_manifest

SHARDED = "parquet"  # `data.name` of a sharded dataset; `data.uri` says where it is


@functools.lru_cache(maxsize=8)
def cached_manifest(uri: str) -> DatasetManifest:
    """The manifest at ``uri``, read once per process (every stage of a worker asks for it)."""
    return read_manifest(uri)


def flips(augment: Any, data: Any) -> bool:
    """`augment.weak.flip`, or when it is null the default of the dataset `data` names: digits are never
    mirrored unless asked. A sharded dataset takes the default of the source it was imported from."""
    if augment.weak.flip is not None:
        return augment.weak.flip
    if data.name == SHARDED:
        return default_flip(cached_manifest(data.uri).source.get("name"))
    return default_flip(data.name)


PIN_MIN_HEX = 16  # what `relay data import` and `relay data info` print as the short digest


def pins(digest: str, pin: str) -> bool:
    """Whether ``data.digest`` names ``digest``: the full sha256, or a prefix of at least PIN_MIN_HEX hex
    characters (64 bits: no two datasets share one by chance), in either case."""
    pin = pin.strip().lower()
    return len(pin) >= PIN_MIN_HEX and digest.lower().startswith(pin)


class PinError(DatasetError):
    """A `data.digest` no dataset can match (too short, not hex): the setting is wrong, whatever `data.uri` holds.
    ``key`` is the setting to blame, where a caller heads the message with one."""

    key = "data.digest"


_SHA256_HEX = 64


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` (`data.digest`) cannot pin a dataset, headed by its key; None when it is a digest or a prefix
    of PIN_MIN_HEX or more hex characters. Said before comparing: a short pin is no mismatch of the data."""
    text = pin.strip().lower()
    what = f"a pin is a dataset's sha256 digest, whole or its first {PIN_MIN_HEX}+ hex characters"
    if any(char not in "0123456789abcdef" for char in text):
        return f"data.digest: {pin!r} is not hexadecimal ({what})"
    if len(text) < PIN_MIN_HEX:
        return f"data.digest: {pin!r} is too short ({len(text)} characters; {what})"
    if len(text) > _SHA256_HEX:
        return f"data.digest: {pin!r} is longer than a sha256 digest ({len(text)} characters; {what})"
    return None


def check_pin(manifest: DatasetManifest, uri: str, digest: str | None) -> None:
    """Refuse a dataset whose digest is not the one the config pins (`data.digest`), and a pin that could
    match none (PinError, naming data.digest, not data.uri).

    The message shows the whole digests: a short pin that is a prefix of the dataset's is no
    mismatch, so printing both at one length could show two equal strings.
    """
    if not digest:
        return
    problem = pin_problem(digest)
    if problem:
        raise PinError(f"{problem}; the dataset at {uri} is {manifest.digest} (`relay data info URI` prints it)")
    if not pins(manifest.digest, digest):
        raise DatasetError(
            f"{uri} holds dataset {manifest.digest}, but data.digest pins {digest}; "
            "point data.uri at the pinned dataset or update data.digest (`relay data info URI` prints it)"
        )


def sharded_labels(uri: str, digest: str | None = None) -> DatasetLabels:
    """Train (and test, when the dataset has that split) labels from the label column; checks shards on the way.

    The manifest is read afresh (not ``cached_manifest``): this is the check before a run starts.
    """
    manifest = read_manifest(uri)
    check_pin(manifest, uri, digest)
    train = read_labels(uri, manifest, "train")
    test = read_labels(uri, manifest, "test") if "test" in manifest.splits else None
    if test is not None and (test < 0).any():
        raise DatasetError(
            f"{uri}: the test split holds {int((test < 0).sum())} rows without a label; evaluation needs labels"
        )
    return DatasetLabels(train, test, manifest.num_classes)


def dataset_labels(data: Mapping[str, Any]) -> DatasetLabels:
    """The labels of the dataset a `data` section (as a dict) names: sharded or in memory."""
    if data["name"] == SHARDED:
        return sharded_labels(data["uri"], data.get("digest"))
    return load_labels(data["name"], data.get("root"), data.get("root_digest"))
