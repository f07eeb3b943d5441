"""Reading an image folder (ROOT/train/<class>/*.png, and test/ or val/): its listing and one image at a time.

What `data.name: imagefolder` and `relay data import` share: which files are a split's samples and
their labels (hidden files skipped; loops, FIFOs and other files that are no regular file, and empty
classes refused), a header check that runs before a run writes anything, and the decode of one file
to RGB uint8 (16-bit and float images scaled to 8 bits).
A file that does not decode is an UnreadableImageError, so a run that meets one says how to go on.
"""

from __future__ import annotations

import os
import shlex
import stat
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image


class UnreadableImageError(ValueError):
    """An image of a folder that does not decode. ``unreadable_data``: the runner then says to start a new run,
    not to resume (orchestrator.errors.UnreadableDataError; this module imports nothing of the orchestrator)."""

    unreadable_data = True


def not_an_image(path: str, exc: Exception) -> UnreadableImageError:
    """The error for a file PIL refuses: the file, why, and the fix. A decompression bomb (more pixels than
    PIL's limit, ``Image.MAX_IMAGE_PIXELS`` x 2) derives from Exception, not OSError: caught by name.

    Found by a stage, the run's way on is a new run, since a resume refuses the fixed folder as
    changed data (``UnreadableImageError``)."""
    from PIL import Image

    if isinstance(exc, PermissionError):  # no image problem: the file is fine, the user may not read it
        return UnreadableImageError(f"imagefolder: {path} {cannot_be_read(path)}, or remove it")
    if isinstance(exc, Image.DecompressionBombError):
        return UnreadableImageError(
            f"imagefolder: {path} has too many pixels for PIL's decompression-bomb limit ({str(exc).rstrip('.')}); "
            "resize it, or remove it"
        )
    return UnreadableImageError(f"imagefolder: {path} does not decode as an image ({exc}); fix or remove it")


def cannot_be_read(*paths: str) -> str:
    """What to say of files or folders this user may not read (PermissionError), and the fix.

    Why: an unreadable file was said not to decode ("fix or remove it"), and an unreadable class folder,
    which torchvision's listing skips without a word, to hold no image ("add images to it").
    """
    them = "it" if len(paths) == 1 else "them"
    return (
        f"cannot be read (permission denied); make {them} readable by the user running Relay "
        f"(e.g. `chmod -R a+rX {shlex.join(paths)}`)"
    )


def check_image_header(path: str) -> None:
    """A ValueError naming ``path`` when PIL cannot read its header: a file that is no image is bad input,
    found before the run starts. Only the header is read (PIL opens lazily), not the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 (the header is parsed by open; size is what it found)
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise not_an_image(path, exc) from exc


@dataclass(frozen=True)
class ImageFolderListing:
    """The images of one ImageFolder split: (path, label) in torchvision's order, the class mapping, and
    what was left out and why (reason -> count), so an import can say what it skipped."""

    samples: list[tuple[str, int]]
    class_to_idx: dict[str, int]
    skipped: dict[str, int]


def _hidden(name: str) -> bool:
    """Names starting with '.' are tool litter (.ipynb_checkpoints, .DS_Store, macOS ``._x.png``), not data."""
    return name.startswith(".")


def imagefolder_samples(folder: Path, class_to_idx: dict[str, int] | None) -> ImageFolderListing:
    """Every image of an ImageFolder split, in torchvision's order, with torchvision's labels.

    torchvision lists the files (images in nested subfolders of a class belong to that class); the
    label is the one it computed, mapped through ``class_to_idx`` (train's) by class name, so a test
    folder's labels agree with train's and a class train lacks is an error. Hidden class folders
    and hidden files are skipped, as a clean listing would; files of an extension torchvision does
    not read (.gif) are skipped as torchvision skips them, and counted. A class folder with no image
    is an error naming it: torchvision's own message names neither the path nor the fix. So are a
    train/ of fewer than 2 classes, a symlink loop (``_check_no_loop``), and a FIFO, socket or device
    under an image's name (``_check_no_special_file``), found by a stat: nothing here opens a file.
    """
    from torchvision import datasets
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    skipped: dict[str, int] = {}
    loops: dict[str, str] = {}  # a folder reached again -> the folder it is, passed before it
    dangling: list[str] = []
    special: list[tuple[str, str]] = []  # (path, what it is): listed as an image, yet no regular file
    real_paths: dict[Path, str] = {}

    def skip(reason: str) -> bool:
        skipped[reason] = skipped.get(reason, 0) + 1
        return False

    def is_image(path: str) -> bool:
        if any(_hidden(part) for part in Path(os.path.relpath(path, folder)).parts):
            return skip("hidden file(s) (name starts with '.')")
        if not has_file_allowed_extension(path, IMG_EXTENSIONS):
            return skip(f"file(s) of a type torchvision does not read as an image ({Path(path).suffix or 'no suffix'})")
        loop = _loop_on_the_way(folder, path, real_paths)
        if loop is not None:
            loops.setdefault(*loop)
            return False
        mode = _mode(path)
        if mode is None:  # listed, yet nothing there: a symlink whose target is gone
            dangling.append(path)
            return False
        kind = _special_kind(mode)
        if kind is not None:
            special.append((path, kind))
            return False
        return True

    class VisibleImageFolder(datasets.ImageFolder):
        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            return visible_classes(Path(directory), skip)

    found = VisibleImageFolder(str(folder), is_valid_file=is_image, allow_empty=True)
    _check_no_loop(loops)
    _check_no_dangling_link(dangling)
    _check_no_special_file(special)
    if class_to_idx is None and len(found.classes) < 2:
        raise ValueError(
            f"imagefolder: {folder} holds 1 class folder ({found.classes[0]}); a classifier needs at least 2 classes: "
            f"add a folder of images per class, as {folder}/<class>/<image>"
        )
    mapping = class_to_idx if class_to_idx is not None else found.class_to_idx
    names = {name: _train_class(name, mapping) for name in found.classes}
    unknown = sorted(name for name, known in names.items() if known is None)
    if unknown:
        raise ValueError(
            f"imagefolder: {folder} has classes {unknown} that train/ lacks; expected a subset of {sorted(mapping)}"
        )
    _check_no_empty_class(folder, found.classes, {label for _, label in found.samples})
    samples = [(path, mapping[names[found.classes[label]]]) for path, label in found.samples]
    return ImageFolderListing(samples, mapping, skipped)


def _train_class(name: str, mapping: dict[str, int]) -> str | None:
    """The class of ``mapping`` (train's) that a test folder ``name`` is: the same name, else the one name equal to
    it in Unicode's NFC form; None: train has no such class.

    Why NFC: macOS writes names decomposed (NFD, e + combining accent) and Linux keeps what it is given,
    so folders copied from two places can spell ``één`` in two ways that print, and read, the same.
    Asking the user to rename a folder whose name looks identical in every listing helps no one; the
    match is refused only when it is ambiguous (train has two such folders), as an unknown class.
    """
    if name in mapping:
        return name
    matches = [known for known in mapping if unicodedata.normalize("NFC", known) == unicodedata.normalize("NFC", name)]
    return matches[0] if len(matches) == 1 else None


def _loop_on_the_way(folder: Path, path: str, real_paths: dict[Path, str]) -> tuple[str, str] | None:
    """(folder reached again, the folder it is) when the way from ``folder`` down to file ``path`` passes one folder
    twice by its real path, i.e. through a symlink loop; else None. ``real_paths`` caches each folder's real path."""
    step, seen = folder, {}
    for part in (None, *Path(os.path.relpath(path, folder)).parts[:-1]):
        step = step if part is None else step / part
        if step not in real_paths:
            real_paths[step] = os.path.realpath(step)
        real = real_paths[step]
        if real in seen:
            return str(step), seen[real]
        seen[real] = str(step)
    return None


def _check_no_loop(loops: dict[str, str]) -> None:
    """Refuse a split whose folders hold a symlink loop (``ln -s ../c0 train/c0/again``), naming each.

    Why refused rather than skipped: torchvision follows links until the OS stops it (ELOOP), so
    one loop listed 120 images as 1720, each seen once per turn; a loop is never meant, the images
    under it are all listed already by their real path, and removing the link is the whole fix.
    Refused, the folder's listing (its digest, labels, import) is what is on disk, read once.
    """
    if loops:
        found = "; ".join(f"{again} is {first} again" for again, first in sorted(loops.items()))
        raise ValueError(
            f"imagefolder: a symlink loop: {found} (a link to a folder it is inside), so its images would be listed "
            "once per turn of the loop; remove the link"
        )


def _check_no_dangling_link(paths: Sequence[str]) -> None:
    """Refuse a split holding symlinks whose target is gone, naming them (the first few) and their targets.

    Why here: the listing took them for images, and the first stat or open of one failed with a
    bare "[Errno 2] No such file or directory", naming neither the link nor the fix.
    """
    if paths:
        shown = "; ".join(f"{path} -> {os.readlink(path) if os.path.islink(path) else '?'}" for path in paths[:3])
        more = f" (and {len(paths) - 3} more)" if len(paths) > 3 else ""
        raise ValueError(
            f"imagefolder: {len(paths)} symlink(s) whose target does not exist: {shown}{more}; restore the "
            "target(s) or remove the link(s)"
        )


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _mode(path: str) -> int | None:
    """The mode of what ``path`` names, symlinks followed; None when the stat fails (``os.path.exists``'s False).

    Stat, never open: opening a FIFO waits for a writer, so `relay data import` stopped at 0% and
    `relay validate` printed nothing, for ever, over one `mkfifo train/a/zz.png`.
    """
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def _special_kind(mode: int) -> str | None:
    """What a file of ``mode`` is when it is no regular file (a FIFO, a socket, a device); None for a regular one."""
    if stat.S_ISREG(mode):
        return None
    return next((name for is_kind, name in _SPECIAL_KINDS if is_kind(mode)), "a file of another kind")


def _check_no_special_file(found: Sequence[tuple[str, str]]) -> None:
    """Refuse a split holding files of an image's name that are no regular file (the first few, and what each is).

    Why refused rather than skipped: a FIFO or socket there was put there by something still
    running (a pipe to a converter, a mount's socket), and leaving it out would make a dataset of
    the folder without saying so; removing it is the whole fix.
    """
    if found:
        shown = "; ".join(f"{path} ({kind})" for path, kind in found[:3])
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        verdict = "is not a regular file; remove it" if len(found) == 1 else "are not regular files; remove them"
        raise ValueError(f"imagefolder: {shown}{more} {verdict}")


def visible_classes(folder: Path, skip: Callable[[str], bool]) -> tuple[list[str], dict[str, int]]:
    """torchvision's ``find_classes`` (sorted sub-folders) without hidden ones, which are counted as skipped, as
    are files beside the class folders (torchvision ignores them).

    No class folder left is an error with the fix (torchvision's names no fix).
    """
    try:
        entries = list(os.scandir(folder))
    except PermissionError as exc:
        raise ValueError(f"imagefolder: {folder} {cannot_be_read(str(folder))}") from exc
    folders = sorted(entry.name for entry in entries if entry.is_dir())
    for _ in filter(_hidden, folders):
        skip("hidden folder(s) not taken as a class")
    for _ in (e for e in entries if not e.is_dir() and not _hidden(e.name)):
        skip(f"file(s) directly in {folder.name}/, outside any class folder (a class is a folder of images)")
    classes = [name for name in folders if not _hidden(name)]
    if not classes:
        raise FileNotFoundError(
            f"imagefolder: {folder} holds no class folder; "
            + (_sharded_hint(folder) or f"place the images as {folder}/<class>/<image>")
        )
    return classes, {name: index for index, name in enumerate(classes)}


def _sharded_hint(split_folder: Path) -> str:
    """The fix for a split folder of a Relay dataset (shards and a manifest: what `relay data import` writes),
    read as an image folder by `data.root` or as an import's SOURCE: it is read as `data.uri`, as it is.

    What a killed import left (its marker, shards, no manifest) is no dataset yet: read as one it is
    refused as unfinished, so the fix is to re-run the import.
    """
    from pipelines.datasets.shards import MANIFEST, leftovers, unfinished_import_advice

    base = split_folder.parent
    if not (base / MANIFEST).is_file() and not any(split_folder.glob("part-*.parquet")):
        return ""
    if not (base / MANIFEST).is_file() and leftovers(str(base)):
        return unfinished_import_advice(str(base))
    return (
        f"{base} is a Relay dataset (Parquet shards, as `relay data import` writes them), not an image folder: "
        f"read it with `data.name=parquet data.uri={base}`, no import needed"
    )


def _check_no_empty_class(folder: Path, classes: Sequence[str], labelled: set[int]) -> None:
    """A class folder without one image would be a class no sample has: name the folders and the fix.

    One this user may not list is said so first: its images may be there, and the fix is its permissions.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    empty = [str(folder / name) for index, name in enumerate(classes) if index not in labelled]
    unreadable = [path for path in empty if not _listable(path)]
    if unreadable:
        them = "it" if len(unreadable) == 1 else "them"
        raise ValueError(
            f"imagefolder: class folder {', '.join(unreadable)} {cannot_be_read(*unreadable)}, or remove {them}"
        )
    if empty:
        raise ValueError(
            f"imagefolder: class folder {', '.join(empty)} holds no image ({', '.join(IMG_EXTENSIONS)}); "
            "add images to it or remove the folder"
        )


def _listable(folder: str) -> bool:
    """Whether this user may list ``folder``: torchvision's listing (os.walk) skips one it may not, silently."""
    try:
        with os.scandir(folder):
            return True
    except PermissionError:
        return False
    except OSError:  # another failure: not what this check is about
        return True


def imagefolder_image(path: str, image_size: int) -> torch.Tensor:
    """One image file as RGB uint8 [3, size, size]: what the in-memory loader and `relay data import` both store.

    A file PIL cannot decode is a ValueError naming it, so both report the file instead of PIL's trace.
    Images of more than 8 bits a channel are scaled to 8 first (``eight_bit``): PIL's ``convert("RGB")``
    clips them instead, and a 16-bit PNG of mean 86.7 (in 8-bit terms) came out at 173, 57% of it white.
    """
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    try:
        with Image.open(path) as opened:
            image = opened.copy()  # decodes the pixels: a truncated file fails here
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's errors for a non-image
        raise not_an_image(path, exc) from exc
    tensor = TF.pil_to_tensor(eight_bit(image, path).convert("RGB"))
    return TF.resize(tensor, [image_size, image_size], antialias=True)


# Pillow's modes of more than 8 bits a channel (all single-channel): 16-bit integers in either byte order,
# 32-bit signed integers and 32-bit floats.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_BIT_MAX = 65535


def eight_bit(image: Image.Image, path: str) -> Image.Image:
    """``image`` with 8 bits a channel: a 16- or 32-bit integer or a float image scaled to 0..255, others as they are.

    16-bit values v become round(v / 257) (65535 -> 255, 257 k -> k exactly). Mode "I" (32-bit
    integers) is what Pillow opens 16-bit PNG, PGM and TIFF files as in some versions, so it is read as
    16-bit; a value outside 0..65535 is refused instead of clipped, as no fixed scale would fit it.
    Mode "F" (floats) is read in 0..1, the float convention of TIFF writers and torchvision; a value
    outside that is refused alike. Refused rather than stretched by each image's own range: that would
    give the same pixel value another brightness in each image of a dataset.
    """
    from PIL import Image

    if image.mode not in (*SIXTEEN_BIT_MODES, "I", "F"):
        return image
    values = np.asarray(image).astype(np.float64)
    low, high, scale = (0.0, 1.0, 255.0) if image.mode == "F" else (0.0, SIXTEEN_BIT_MAX, 255.0 / SIXTEEN_BIT_MAX)
    if values.size and (np.isnan(values).any() or values.min() < low or values.max() > high):
        raise ValueError(
            f"imagefolder: {path} holds {image.mode!r} pixels from {np.nanmin(values):g} to {np.nanmax(values):g}, "
            f"outside the {low:g}..{high:g} Relay reads that mode in; save it as an 8- or 16-bit image"
        )
    return Image.fromarray(np.rint(values * scale).astype(np.uint8), mode="L")


# ---------------------------------------------------------------------------------------------
# Long-tailed splits (CReST protocol, docs/ALGORITHMS.md, Long-tailed splits)
# ---------------------------------------------------------------------------------------------
