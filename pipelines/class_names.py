"""Classes named by name in a config (`data.classes: [cat, dog]`), turned into the numbers the stages use.

Why: a task of some classes (transfer learning's target, LwF's new task) was given by class
number only, and an image folder numbers its classes in the sorted order of its folder names,
so folder "10" is class 2 and a user had to work the numbers out. A name is looked up in the
dataset's own class list (an image folder's class folders, CIFAR's meta file, a sharded
dataset's manifest) without decoding an image, and the config is pinned with the numbers, as
it is with a dataset's digest; the saved config says which numbers the names were.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from pipelines import data as datasets
from pipelines.datasets.catalog import SHARDED
from pipelines.datasets.shards import read_manifest
from pipelines.image_folder import visible_classes

# Settings that name classes of the config's dataset: (section, field).
CLASS_SETTINGS = (("data", "classes"), ("transfer", "source_classes"), ("lwf", "old_classes"))


def classes_by_number(config: Any) -> dict[str, list[int]]:
    """Dotted key -> class numbers, for every class setting that names a class by name; {} when none does.

    A name the dataset lacks is a ValueError naming the dataset's classes. Data that cannot be read
    (a missing folder) gives {}: the preflight then says what is wrong with it.
    """
    named = {
        f"{section}.{key}": value
        for section, key in CLASS_SETTINGS
        if isinstance(value := getattr(getattr(config, section, None), key, None), list)
        and any(isinstance(c, str) for c in value)
    }
    if not named:
        return {}
    try:
        names = dataset_class_names(config.data)
    except (OSError, ValueError):  # unreadable data: the preflight names the problem
        return {}
    return {key: [class_number(c, names, key, config.data.name) for c in value] for key, value in named.items()}


def dataset_class_names(data: Any) -> tuple[str, ...]:
    """The names of a dataset's classes in number order, read without decoding an image; () when the dataset's
    classes have numbers only (digits, the synthetic set)."""
    if data.name == SHARDED:
        return tuple(read_manifest(data.uri).classes)
    if data.name == "imagefolder":
        base = datasets.imagefolder_base(data.root)
        return tuple(visible_classes(base / "train", lambda reason: False)[0])
    if data.name in datasets.CIFAR_LAYOUTS:
        layout = datasets.CIFAR_LAYOUTS[data.name]
        return tuple(datasets.cifar_classes(datasets.cifar_batches_folder(data.name, data.root), layout))
    return ()


def class_number(given: int | str, names: Sequence[str], key: str, dataset: str) -> int:
    """``given`` as a class number: a number as it is, a name by its place in ``names`` (matched as written, else
    in Unicode's NFC form, as a test folder is matched to train's)."""
    if isinstance(given, int):
        return given
    if given in names:
        return names.index(given)
    matches = [i for i, name in enumerate(names) if _nfc(name) == _nfc(given)]
    if len(matches) == 1:
        return matches[0]
    if not names:
        raise ValueError(
            f"{key}: {given!r} is not a class of dataset {dataset!r}, whose classes have numbers only; give class numbers"
        )
    shown = ", ".join(f"{i} {name}" for i, name in enumerate(names[:40]))
    more = f", ... ({len(names)} in all)" if len(names) > 40 else ""
    raise ValueError(
        f"{key}: {given!r} is not a class of dataset {dataset!r}; its classes: {shown}{more}; give one of these names or numbers"
    )


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)
