"""What is wrong with a folder no source recognises, when it looks like data laid out another way: empty,
class folders without train/, one split of an image folder, split folders under other names, or Relay's
shards without their manifest.

Why: each of these was told only that no source recognises it, with the list of sources. ``folder_problem``
is the message `relay data import` gives instead, and a folder it has one for is one this package claims
(``imports.claims``), so its import says what to change.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.datasets import shards
from pipelines.datasets.sources import SOURCES, recognise_imagefolder

IMAGEFOLDER_LAYOUT = (
    "ROOT/train/<class>/<image> (test images, if any, in ROOT/test/<class>/<image> or ROOT/val/<class>/<image>)"
)


def folder_problem(path: Path) -> str | None:
    """What is wrong with a folder no source recognises, when it looks like an image folder laid out another way;
    None: it does not.

    Why: an empty folder, and class folders without train/ (torchvision's ImageFolder root, or the train/
    folder itself), were both told only that no source recognises them, with the list of sources.
    """
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError:  # a folder it may not list: the general message, which lists the sources
        return None
    visible = [entry for entry in entries if not entry.name.startswith(".")]
    if not visible:
        held = (
            f"holds only hidden files ({', '.join(entry.name for entry in entries[:3])}), which an import skips"
            if entries
            else "is an empty folder"
        )
        return (
            f"{held}: nothing to import. Put the data in it as one of the folder sources reads it ({_folder_layouts()}), "
            "or pass the folder that holds it"
        )
    bare = _shards_without_manifest(path)
    if bare is not None:
        return bare
    classes = [entry.name for entry in visible if entry.is_dir() and _holds_image(Path(entry.path))]
    if not classes:
        return None
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    parent = path.resolve().parent
    if path.resolve().name in ("train", "test", "val") and recognise_imagefolder(parent) is not None:
        return (
            f"is the {path.resolve().name}/ split of the image folder {parent} (class folders {shown}): "
            f"pass {parent} as SOURCE, which imports its train/ and test/ (or val/) together"
        )
    misnamed = _misnamed_splits(path, classes)
    if misnamed is not None:
        return misnamed
    return (
        f"holds class folders ({shown}) but no train/ split: an image folder is laid out as {IMAGEFOLDER_LAYOUT}. "
        f"Move the class folders into {path / 'train'}/ (and test images into {path / 'test'}/<class>/), "
        "then import it again"
    )


def _shards_without_manifest(path: Path) -> str | None:
    """What to do with a folder of shards named as Relay writes them (train/part-00000.parquet) but no manifest;
    None when its split folders hold none.

    Why: such a folder was told that no source recognises it, with the list of sources, where `relay data info`
    of it says what it lacks. Relay's names only (``shards.SHARD_NAME``), so a plug-in's folder of other Parquet
    files stays the plug-in's. A manifest is what makes shards a dataset, and CONTRACTS says how to write one.
    """
    found = []
    for split in shards.SPLIT_NAMES:
        try:
            with os.scandir(path / split) as entries:
                found += sorted(f"{split}/{e.name}" for e in entries if shards.SHARD_NAME.fullmatch(e.name))
        except OSError:
            continue
    if not found:
        return None
    if shards.holds_import_marker(str(path)):
        return (
            f"is what an unfinished import left (its {shards.IMPORT_MARKER} and shards, no {shards.MANIFEST}): re-run "
            f"the import that wrote it, which clears it and imports again, then import from {path}"
        )
    shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    return (
        f"holds Parquet shards ({shown}) but no {shards.MANIFEST}, the manifest that makes them a Relay dataset "
        f"(classes, image shape, each shard's rows and sha256): write it as docs/CONTRACTS.md says under "
        f"'Writing a dataset yourself' (or write the data with pipelines.datasets.shards.write_dataset, which writes "
        f"both), then import {path} again; if it is a Relay dataset whose {shards.MANIFEST} was lost or is not "
        "copied yet, put that file back"
    )


def _misnamed_splits(path: Path, folders: list[str]) -> str | None:
    """The fix for split folders under other names (ROOT/training/<class>/ for ROOT/train/<class>/): rename them;
    None when ``folders`` do not look like that.

    Why: such a folder was taken for a class folder, and the advice to move the class folders into ROOT/train/
    made ROOT/train/training/<class>/, a single class. They look like split folders when each holds class
    folders and no image of its own, and either there is one (a single class is no dataset, so it is the train
    split) or their names say which split each is (training, validation, testing); a class of nested folders
    (cat/2019/) keeps the general message.
    """
    held = {name: _class_folders(path / name) for name in folders}
    if not all(held.values()):
        return None
    targets = {name: "train" if len(folders) == 1 else _split_named(name) for name in folders}
    named = list(targets.values())
    if None in named or len(set(named)) < len(named) or "train" not in named:
        return None
    shown = "; ".join(f"{name}/ holds class folders {', '.join(held[name][:5])}" for name in folders)
    renames = " and ".join(f"{path / name}/ to {path / target}/" for name, target in targets.items() if name != target)
    return (
        f"has no train/ split, but split folders under other names ({shown}): an image folder is laid out as "
        f"{IMAGEFOLDER_LAYOUT}. Rename {renames}, then import it again"
    )


def _class_folders(folder: Path) -> list[str]:
    """The visible subfolders of ``folder`` that hold images, when it holds no image of its own; else []."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return []
    visible = [entry for entry in entries if not entry.name.startswith(".")]
    if any(entry.is_file() and entry.name.lower().endswith(shards.IMAGE_SUFFIXES) for entry in visible):
        return []
    return [entry.name for entry in visible if entry.is_dir() and _holds_image(Path(entry.path))]


def _split_named(name: str) -> str | None:
    """The split a folder's name says it is (training -> train, validation -> val, testing -> test), or None."""
    lowered = name.lower()
    for split, prefixes in (("train", ("train", "trn")), ("val", ("val",)), ("test", ("test", "tst"))):
        if lowered.startswith(prefixes):
            return split
    return None


def _folder_layouts() -> str:
    """Each folder source's layout, as the source describes itself: the empty-folder message names them all.

    Why derived: the message named the ImageFolder layout only, and a CIFAR user was told to lay out photos.
    """
    return "; ".join(f"{name}: {source.description}" for name, source in SOURCES.items() if source.recognise)


def _holds_image(folder: Path) -> bool:
    """Whether ``folder`` or a folder inside it holds a file torchvision reads as an image (hidden ones left out).

    The walk ends at the first image, and the suffixes are ``shards.IMAGE_SUFFIXES`` (torchvision's), not
    torchvision's own: `relay data import` asks this of every folder a plug-in imports too (``claims``), where
    importing torchvision (and torch with it: 8 s on a busy machine) cost far more than the look itself.
    """
    for _, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        if any(not name.startswith(".") and name.lower().endswith(shards.IMAGE_SUFFIXES) for name in files):
            return True
    return False
