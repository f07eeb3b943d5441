"""`relay data info DEST`: a dataset's summary, the same one an import prints, and with --verify every
shard's sha256 and every image decoded, each pass with a progress bar on a terminal.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
from tqdm import tqdm

from pipelines.datasets import checks, shards
from pipelines.datasets.catalog import SHARDED


def describe(uri: str, verify: bool) -> dict[str, Any]:
    """What ``relay data info`` prints; ``verify`` also hashes every shard and decodes every image."""
    manifest = shards.read_manifest(uri)
    for split in manifest.splits:
        checks.read_labels(uri, manifest, split)  # sizes, schemas, sample ids, label range
    summary = dataset_summary(uri, manifest)
    if verify:
        total = sum(shard.bytes for split in manifest.splits.values() for shard in split.shards)
        with _verify_bar("sha256", total, "B") as bar:
            checks.verify_digests(uri, manifest, hashed=bar.update)
        _verify_written_files(uri, manifest)
        _decode_every_image(uri, manifest)
        summary["verified"] = "every shard's sha256 matches and every image decodes"
    return summary


def _decode_every_image(uri: str, manifest: shards.DatasetManifest) -> None:
    """Read every row group of every split as a run does (``ShardRows``): an image that does not decode is refused."""
    from pipelines.datasets.rows import ShardRows

    with _verify_bar("images", sum(info.count for info in manifest.splits.values()), "img") as bar:
        for split, info in manifest.splits.items():
            rows = ShardRows(uri, manifest, split)
            for start in range(0, info.count, manifest.rows_per_group):
                ids = np.arange(start, min(start + manifest.rows_per_group, info.count))
                rows.read(ids)
                bar.update(len(ids))


def _verify_bar(what: str, total: int, unit: str) -> tqdm:
    """The progress bar of one pass of `relay data info --verify`, as the import draws its bars (one refresh a
    second, the rate over the whole pass), on a terminal only and erased when done, so the summary is what stays.

    Why: --verify of 2M rows printed nothing for 18 s. A pipe or a log gets no bar: it would keep every refresh.
    """
    return tqdm(
        total=total,
        desc=f"verify {what}",
        unit=unit,
        unit_scale=unit == "B",
        mininterval=1.0,
        smoothing=0,
        leave=False,
        disable=None,
    )


def _written_files(uri: str, manifest: shards.DatasetManifest) -> dict[str, str]:
    """The summary's line for the files an import wrote beside the shards: where to find each id's file."""
    written = manifest.source.get("files_written", {})
    fs, root = shards.open_root(uri)
    lines = [
        f"{shards.child_uri(uri, name)}: each sample id's image file and class"
        if fs.get_file_info(f"{root}/{name}").type == pafs.FileType.File
        else _missing_written_file(uri, name)
        for name in written
    ]
    return {"files": "; ".join(lines)} if lines else {}


def _missing_written_file(uri: str, name: str) -> str:
    """What `relay data info` says of a file the import wrote beside the shards that is gone (the shards still serve)."""
    return (
        f"{shards.child_uri(uri, name)}: missing (the manifest lists it: each sample id's image file and class); copy it back "
        "from the dataset's original place, or re-import into a new path"
    )


def _verify_written_files(uri: str, manifest: shards.DatasetManifest) -> None:
    """The files an import wrote beside the shards (``shards.SAMPLE_FILES``) against the sha256 the manifest records."""
    fs, root = shards.open_root(uri)
    for name, sha256 in manifest.source.get("files_written", {}).items():
        try:
            with fs.open_input_stream(f"{root}/{name}") as stream:
                found = hashlib.sha256(stream.read()).hexdigest()
        except FileNotFoundError as exc:
            raise shards.DatasetError(_missing_written_file(uri, name)) from exc
        except (OSError, pa.ArrowException) as exc:
            raise shards.DatasetError(
                f"{shards.child_uri(uri, name)}: could not read it ({shards.one_line(exc)})"
            ) from exc
        if found != sha256:
            raise shards.DatasetError(
                f"{shards.child_uri(uri, name)}: sha256 {found[:16]} does not match the manifest's {sha256[:16]}: it changed after "
                "the import; re-import the dataset to write it again"
            )


def dataset_summary(uri: str, manifest: shards.DatasetManifest) -> dict[str, Any]:
    """What `relay data info` and an import print of the dataset at ``uri``: digest, source, classes, images, splits."""
    c, h, w = manifest.image_shape
    splits = {
        name: f"{s.count} images ({s.unlabeled} without a label) in {len(s.shards)} shard(s), "
        f"{sum(x.bytes for x in s.shards) / 1e6:.1f} MB"
        for name, s in manifest.splits.items()
    }
    return {
        "dataset": uri,
        "digest": manifest.digest,
        "source": manifest.source.get("name", "?"),
        "classes": f"{manifest.num_classes} ({', '.join(manifest.classes[:10])}{', ...' if manifest.num_classes > 10 else ''})",
        "images": f"{c}x{h}x{w} uint8, stored {manifest.encoding}, {manifest.rows_per_group} rows a row group",
        **{f"split {name}": text for name, text in splits.items()},
        **_written_files(uri, manifest),
    }


def use_line(dest: str) -> str:
    """The command that runs a pipeline on the dataset at ``dest``, shell-quoted as every printed command is.

    Why: an S3 URI's query (`?endpoint_override=HOST&scheme=http`) holds a `&`, which backgrounded a pasted command.
    """
    return f"relay run CONFIG data.name={SHARDED} " + shlex.quote(f"data.uri={dest}")
