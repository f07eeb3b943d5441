"""What makes two imports the same import, and the check that a repeated import is one.

A repeated import is a no-op only while the destination and the source are what the first import made
and read: the same source and options (compared as resolved), every shard at its recorded size, and for a
folder source the same files (names, sizes and times, ``checks.files_fingerprint``). Anything else is
refused with what differs: writing over a dataset could break the runs that use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines import data as datasets
from pipelines.datasets import checks, codec, shards
from pipelines.datasets.import_checks import manifest_there
from pipelines.datasets.info import dataset_summary
from pipelines.datasets.sources import Source


def identity_of(kind: Source, folder: Path | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two imports the same import: the source, its folder (and a fingerprint of its files,
    for a folder that can change), and the options that change the bytes."""
    chosen = {key: options[key] for key in ("encoding", "rows_per_group", *kind.options) if options.get(key)}
    identity = {"name": kind.name, "location": None if folder is None else str(folder), "options": chosen}
    if kind.files is not None and folder is not None:
        identity["files"] = _fingerprint(kind, folder)
    return identity


def _fingerprint(kind: Source, folder: Path) -> dict[str, Any]:
    """``kind.files(folder)``, refused (ValueError, before anything is written) unless ``checks.files_fingerprint``
    made it: a repeated import compares it field by field, and a source's own dict crashed that comparison."""
    fingerprint = kind.files(folder)
    problem = checks.fingerprint_problem(fingerprint)
    if problem:
        raise ValueError(
            f"source {kind.name!r}: its files({folder}) returned {problem}; a source's files(folder) must return "
            "pipelines.datasets.checks.files_fingerprint(folder, [(split, path), ...]) over the files an import "
            "reads, so a repeated import can tell whether they changed. This is a bug in the source, not in the "
            "data: fix its files function"
        )
    return fingerprint


def times_apart(identity: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The source's identity without its files' times, and those times: the manifest keeps them out of the digest
    (``shards.DatasetManifest``), so the same bytes imported again are the same dataset."""
    files = identity.get("files")
    if not files or "times" not in files:
        return dict(identity), ""
    return {**identity, "files": {key: value for key, value in files.items() if key != "times"}}, files["times"]


def _imported_files(manifest: shards.DatasetManifest) -> dict[str, Any] | None:
    """The fingerprint of the files the import of ``manifest`` read, its times included, wherever it recorded them:
    ``source_times``, or (a manifest written before that field) inside the source."""
    files = manifest.source.get("files")
    if not files or not manifest.source_times:
        return files
    return {**files, "times": manifest.source_times}


def already_there(dest: str, kind: Source, identity: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A repeated import is a no-op only when the destination and the source are still what that import made.

    Checked cheaply, before anything is read or written: the manifest against its digest, every
    shard there at its recorded size, the same source and options (compared as resolved: --encoding
    auto that chose raw equals raw), and for a folder source the same files. Anything else is
    refused with what differs: writing over a dataset could break the runs that use it.
    """
    retry = f"remove {dest} (or import into a new path) to re-import"
    manifest = manifest_there(dest, retry)
    differences = _differences(manifest, kind, identity, options)
    if differences:
        raise ValueError(
            f"{dest} already holds a different dataset (digest {manifest.digest[:16]}): {'; '.join(differences)}; "
            "import into a new destination, or delete that one first"
        )
    changed = checks.changed_shards(dest, manifest)
    if changed:
        raise ValueError(f"{dest} changed after its import: {', '.join(changed)}; {retry}")
    imported = _imported_files(manifest)
    _check_recorded(imported, identity, dest, retry)
    source_change = checks.files_change(imported, identity.get("files"))
    if source_change:
        raise ValueError(
            f"the source {identity['location']} changed since it was imported into {dest}: {source_change}; {retry}"
        )
    note = "already imported from this source: nothing written" + checks.unchecked_files(
        imported, identity.get("files")
    )
    return {**dataset_summary(dest, manifest), "note": note}


def _check_recorded(imported: Any, identity: Mapping[str, Any], dest: str, retry: str) -> None:
    """Refuse a dataset whose record of its source's files no ``checks.files_fingerprint`` made, which a source's
    ``files`` returning its own dict left before ``_fingerprint`` refused it: compared with the folder's files now,
    it ended the repeated import in a KeyError traceback."""
    problem = checks.fingerprint_problem(imported, times=False) if imported and identity.get("files") else None
    if problem:
        raise ValueError(
            f"{dest} was imported from {identity['location']} by a source whose files(folder) returned {problem}, "
            f"so whether that folder changed since cannot be told; {retry}"
        )


def _differences(
    manifest: shards.DatasetManifest, kind: Source, identity: Mapping[str, Any], options: Mapping[str, Any]
) -> list[str]:
    """What makes this import another dataset than the one at the destination, one phrase each (old vs new).

    Options are compared as the import resolves them against the stored image shape, so leaving
    an option at its default and passing the value the default chose are the same import. Another
    --image-size is said alone: the encoding and row group that follow from it are no news.
    """
    old = manifest.source
    found = []
    if old.get("name") != identity["name"]:
        found.append(f"source: imported from {old.get('name')!r}, this import reads {identity['name']!r}")
    elif old.get("location") != identity["location"]:
        found.append(f"source folder: imported from {old.get('location')}, this import reads {identity['location']}")
    shape = manifest.image_shape
    if "image_size" in kind.options:
        size = int(options.get("image_size") or datasets.IMAGEFOLDER_SIZE)
        if tuple(shape[1:]) != (size, size):  # the defaults of the other options follow the size: not theirs
            return [*found, f"--image-size: imported at {shape[1]}x{shape[2]}, this import asks for {size}x{size}"]
    asked = str(options.get("encoding") or "auto")
    if codec.choose_encoding(asked, shape) != manifest.encoding:
        found.append(f"--encoding: stored {manifest.encoding}, this import asks for {asked}")
    rows = int(options.get("rows_per_group") or shards.rows_per_group_for(shape))
    if rows != manifest.rows_per_group:
        found.append(f"--rows-per-group: stored {manifest.rows_per_group}, this import asks for {rows}")
    return found
