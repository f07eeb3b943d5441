"""What an import checks before it reads its source or writes anything: options in range and meant for the
source, a local DEST apart from the SOURCE folder, and what DEST already holds (a dataset, whose manifest
must check out; what an unfinished import left, which is cleared; anything else, which is refused).

Why before: an import refused halfway leaves nothing of what it wrote, but it has read images for nothing,
and a destination it may not write belongs to someone else.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from pipelines import data as datasets
from pipelines.datasets import shards
from pipelines.datasets.sources import SOURCES, Source

MAX_IMAGE_SIZE = 1024  # data.image_size's bound (pipelines/schema.py, DataSection): the same images either way
OPTION_BOUNDS: dict[str, tuple[int, int | None]] = {"image_size": (4, MAX_IMAGE_SIZE), "rows_per_group": (1, None)}


def check_apart(source: Path, dest: str) -> None:
    """Refuse a local DEST inside the SOURCE folder, or SOURCE inside (or at) DEST, before anything is written.

    Shards written into the folder an import reads become part of it: DEST under train/ is a
    class folder with no image to the next import or run of SOURCE, which then fail. And a DEST
    around SOURCE is a folder the import may clear or write into.
    """
    fs, root = shards.open_root(dest)
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    target = Path(root).resolve()
    if target == source:
        where = f"SOURCE {source} is DEST itself: the shards would be written among the images they are read from"
    elif target.is_relative_to(source):
        where = (
            f"DEST {target} is inside SOURCE {source}: its shards would become part of the folder the import "
            "reads, and the next import or run of SOURCE would read them as its own"
        )
    elif source.is_relative_to(target):
        where = f"SOURCE {source} is inside DEST {target}: the import would write into the folder that holds its source"
    else:
        return
    raise ValueError(f"{where}; import into a DEST outside SOURCE, e.g. {source.parent / (source.name + '-shards')}")


def check_options(kind: Source, folder: Path | None, options: Mapping[str, Any]) -> None:
    """Options in range and meant for this source: --image-size has data.image_size's bound, since one
    decoded image of 3 x N x N bytes per row is what a chunk and a reader hold (100000 asks for 30 GB an image)."""
    for key, (least, most) in OPTION_BOUNDS.items():
        value = options.get(key)
        if value is not None and not least <= int(value) <= (most or int(value)):
            span = f"at least {least}" if most is None else f"{least} to {most}"
            raise ValueError(f"--{key.replace('_', '-')}: expected {span}, got {value}; pass a value in that range")
    size = options.get("image_size")
    if size and "image_size" not in kind.options and int(size) != _own_side(kind):
        raise ValueError(_fixed_size(kind, folder, int(size)))


def _own_side(kind: Source) -> int | None:
    """The side of ``kind``'s square images (its own size, which --image-size may restate); None when not square,
    or not known before the source is read (a source that is no in-memory dataset: not in IMAGE_SHAPES).

    Why: `relay data import digits DEST --image-size 16` asks for the size digits are imported at, and
    was refused with advice to train them "at 16x16" another way.
    """
    shape = datasets.IMAGE_SHAPES.get(kind.name)
    if shape is None:
        return None
    height, width = shape[1:]
    return height if height == width else None


def _resizing_sources() -> str:
    """The sources that take --image-size, for the message refusing it elsewhere."""
    return ", ".join(name for name, source in SOURCES.items() if "image_size" in source.options) or "none"


def _fixed_size(kind: Source, folder: Path | None, size: int) -> str:
    """Why ``kind`` takes no --image-size, and how to train it at ``size`` after all.

    Not "resize it at training time": data.image_size is refused for a sharded dataset, which keeps the
    size it was imported at, so the way to another size is reading the source in place, where
    data.image_size applies (digits at 8 keeps its native 8x8 pixels).
    """
    if kind.name not in datasets.IMAGE_SHAPES:  # no in-memory dataset of that name to read in place
        return (
            f"--image-size: source {kind.name!r} is imported at its own size and takes no --image-size, which "
            f"resizes only the sources that take it ({_resizing_sources()}); drop --image-size"
        )
    shape = "x".join(str(side) for side in datasets.IMAGE_SHAPES[kind.name])
    in_place = f"data.name={kind.name}" + ("" if folder is None else f" data.root={shlex.quote(str(folder))}")
    return (
        f"--image-size: source {kind.name!r} is imported at its own size ({shape}) and takes no --image-size, "
        f"which resizes image folders only; drop --image-size. A sharded dataset keeps the size it was imported "
        f"at, so to train {kind.name} at {size}x{size} read it in place instead: {in_place} data.image_size={size}"
    )


def clear_unfinished(dest: str) -> dict[str, str]:
    """Remove what an unfinished import left at ``dest`` (a note saying so); refuse a destination holding anything else.

    Only a destination the import's marker vouches for is cleared (``shards.leftovers``): Parquet
    files under train/ without it may be the user's own, or a dataset whose manifest was lost.
    """
    found = shards.leftovers(dest)
    if found is None:
        held = shards.contents(dest) or "files"
        why = (  # a killed import's marker beside files no import writes vouches for none of them
            f"besides an unfinished import's {shards.IMPORT_MARKER} it holds files an import never writes"
            if shards.holds_import_marker(dest)
            else f"no {shards.MANIFEST}, and no {shards.IMPORT_MARKER} of an unfinished import"
        )
        raise ValueError(
            f"{dest} is not empty and holds no Relay dataset (it holds {held}; {why}): the import deletes only "
            f"what it can tell it wrote, so it leaves these alone; import into a new or empty destination"
        )
    if not found:
        return {}
    files = shards.shard_files(found)
    shards.clear_leftovers(dest, found)
    folders = sum(info.type == pafs.FileType.Directory for info in found)
    left = f"{files} shard file(s) and {folders} folder(s), no manifest"
    return {"cleared": f"{dest} held what an unfinished import left ({left}): removed it and imported again"}


def manifest_there(dest: str, retry: str) -> shards.DatasetManifest:
    """The manifest of the dataset already at DEST; one that does not check out is refused, saying ``retry``."""
    try:
        return shards.read_manifest(dest)
    except shards.ManifestError as exc:
        raise ValueError(
            f"{dest} holds a Relay dataset whose manifest does not check out ({exc.reason}); {retry}"
        ) from exc
