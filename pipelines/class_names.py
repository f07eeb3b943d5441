"""Classes named by name in a config (`data.classes: [cat, dog]`, `data.class_order`), turned into the numbers the stages use.

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
# The setting that orders the TASK's classes: numbered 0..k-1 in `data.classes`' order when it is set.
ORDER_KEY = "data.class_order"
MISSING_SHOWN = 20  # missing classes a message names before it counts the rest (CIFAR-100 has 100)


def classes_by_number(config: Any) -> dict[str, list[int]]:
    """Dotted key -> class numbers, for every class setting that names a class by name; {} when none does.

    A name the dataset lacks is a ValueError naming the dataset's classes. Data that cannot be read
    (a missing folder) gives {}: the preflight then says what is wrong with it.
    """
    named = {
        key: value
        for key, value in ((f"{section}.{name}", _setting(config, section, name)) for section, name in CLASS_SETTINGS)
        if _names_a_class(value)
    }
    order = _setting(config, "data", "class_order")
    if order and not _names_a_class(order):
        check_numbered_order(list(order), config)
    if not named and not _names_a_class(order):
        return {}
    try:
        names = dataset_class_names(config.data)
    except (OSError, ValueError):  # unreadable data: the preflight names the problem
        return {}
    numbers = {key: [class_number(c, names, key, config.data.name) for c in value] for key, value in named.items()}
    if _names_a_class(order):
        task = numbers.get("data.classes", config.data.classes)
        numbers[ORDER_KEY] = task_class_order(order, names, task, config.data.classes, config.data.name)
    return numbers


def task_class_order(
    order: Sequence[int | str],
    names: Sequence[str],
    task: Sequence[int] | None,
    given: Sequence[int | str] | None,
    dataset: str,
) -> list[int]:
    """`data.class_order` as the numbers the split reads: a name is its class's number in the task.

    Without `data.classes` that is the dataset's class number. With it, the split has relabelled the
    task's classes 0..k-1 in `data.classes`' order, and class_order numbers them so: a name is the
    place of its class in ``task`` (`data.classes` as numbers; ``given`` as the user wrote it), and a
    class outside the task is a ValueError. A number is kept as it is, as with numbers only.
    """
    numbers = [class_number(c, names, ORDER_KEY, dataset) if isinstance(c, str) else c for c in order]
    if not task:
        check_every_class_once(order, numbers, names)
        return numbers
    outside = [c for c, number in zip(order, numbers, strict=True) if isinstance(c, str) and number not in task]
    if outside:
        raise ValueError(
            f"{ORDER_KEY}: {outside[0]!r} is not a class of the task, data.classes {list(given or task)}; "
            f"name only classes of data.classes, or give their places in it (0..{len(task) - 1})"
        )
    places = [
        list(task).index(number) if isinstance(c, str) else number for c, number in zip(order, numbers, strict=True)
    ]
    check_every_class_once(order, places, [_class_label(n, names) for n in (given or task)])
    return places


def check_every_class_once(order: Sequence[int | str], numbers: Sequence[int], classes: Sequence[int | str]) -> None:
    """ValueError unless ``numbers`` (`data.class_order` as the split reads it) orders each of ``classes`` once.

    Why here: the split found it too, but from the pinned numbers only, and a user who wrote
    `[cat, dog]` read "class_order: expected a permutation of 0..9; got [9, 4]".
    """
    if sorted(numbers) == list(range(len(classes))):
        return
    raise ValueError(
        f"{ORDER_KEY}: expected each of the task's {len(classes)} classes once, got {list(order)} "
        f"({order_faults(order, numbers, classes)}); list every class once, by name or number"
    )


def check_numbered_order(order: list[int], config: Any) -> None:
    """ValueError unless a `data.class_order` of numbers only numbers each class of the task once, naming the
    missing and doubled numbers as written, and with `data.classes` set, that they are places in that list.

    Why here: the split's own check said only "expected each class number 0..9 once; got [1, 1, 2]", and
    with `data.classes: [5, ..., 9]` a user who wrote class numbers 5..9 was not told the numbers are places.
    Data whose classes cannot be read is left to the preflight, which names that problem.
    """
    task = _setting(config, "data", "classes")
    try:
        count = len(task) if task else dataset_class_count(config.data)
    except (OSError, ValueError):
        return
    if sorted(order) == list(range(count)):
        return
    places = f" (a class's place in data.classes {list(task)}, not its number in the dataset)" if task else ""
    raise ValueError(
        f"{ORDER_KEY}: expected each class number 0..{count - 1} once{places}; got {order} "
        f"({order_faults(order, order, list(range(count)))}); list every class of the task once"
    )


def dataset_class_count(data: Any) -> int:
    """How many classes the dataset has: its names, else its labels (cheap for digits and the synthetic set, which
    have numbers only; the preflight reads the same labels next)."""
    names = dataset_class_names(data)
    return len(names) or datasets.load_labels(data.name, data.root, getattr(data, "root_digest", None)).num_classes


def order_faults(order: Sequence[int | str], numbers: Sequence[int], classes: Sequence[int | str]) -> str:
    """What is wrong with a class order: the classes it leaves out, those it gives twice (as written), numbers
    that are no class; ``numbers`` is ``order`` as class numbers 0..len(classes)-1, ``classes`` how to show each."""
    missing = [str(classes[c]) for c in range(len(classes)) if c not in numbers]
    doubled = sorted({str(c) for c, n in zip(order, numbers, strict=True) if list(numbers).count(n) > 1})
    outside = [str(c) for c, n in zip(order, numbers, strict=True) if not 0 <= n < len(classes)]
    shown = missing[:MISSING_SHOWN] + [f"and {len(missing) - MISSING_SHOWN} more"] * (len(missing) > MISSING_SHOWN)
    wrong = [
        f"missing {', '.join(shown)}" if missing else "",
        f"more than once: {', '.join(doubled)}" if doubled else "",
        f"no such class: {', '.join(outside)}" if outside else "",
    ]
    return "; ".join(w for w in wrong if w)


def _class_label(given: int | str, names: Sequence[str]) -> int | str:
    """A class as a message shows it: its name where the dataset has one, else as given."""
    return names[given] if isinstance(given, int) and 0 <= given < len(names) else given


def _setting(config: Any, section: str, name: str) -> Any:
    return getattr(getattr(config, section, None), name, None)


def _names_a_class(value: Any) -> bool:
    """Whether a class setting names some class by name (then it needs the dataset's class names)."""
    return isinstance(value, list) and any(isinstance(c, str) for c in value)


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
