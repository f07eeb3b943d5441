"""The forms of single config values that no pydantic type checks: names that become folders, numbers that
YAML may have read as booleans, MLflow experiment names, Ray addresses, sizes in bytes.

Each is checked when the file is read, so a bad value is one line of the config's ConfigError (exit 2)
instead of an error from MLflow or Ray after the run's record was written. The CLI checks a Ray address
given on the command line (`--address`) with the same ``ray_address_problem``.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal

# A name that becomes a folder (a run id, a sweep's name): one path segment, never `..` or `/`.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def name_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot name a folder inside the workspace, or None when it can.

    Run ids and sweep names become ``runs/<id>/`` and ``tune/<name>/``: a ``../`` in one would
    write outside the workspace, so they are single path segments of safe characters.
    """
    if isinstance(value, str) and NAME_PATTERN.fullmatch(value):
        return None
    return (
        f"{what} {value!r} is not a safe name: it becomes a folder inside the workspace, so use 1-128 "
        "letters, digits, '.', '_' or '-', starting with a letter or digit (no '/' or '..')"
    )


def safe_name(value: str) -> str:
    """``value`` when it can name a folder inside the workspace (``name_problem``); ValueError saying why not."""
    problem = name_problem(value, "name")
    if problem:
        raise ValueError(problem)
    return value


def holds_bool(value: Any) -> bool:
    """A boolean, or a list/tuple with one (``randint: [yes, 3]``)."""
    if isinstance(value, list | tuple):
        return any(isinstance(item, bool) for item in value)
    return isinstance(value, bool)


def numbers_only(annotation: Any) -> bool:
    """Whether a field's type holds numbers (int, float) and nowhere a boolean or Any."""
    kinds: set[str] = set()

    def walk(node: Any) -> None:
        if node is bool or node is Any:
            kinds.add("bool")
        elif node in (int, float):
            kinds.add("number")
        elif typing.get_origin(node) is Literal:
            kinds.update("bool" for arg in typing.get_args(node) if isinstance(arg, bool))
        else:
            for arg in typing.get_args(node):
                walk(arg)

    walk(annotation)
    return kinds == {"number"}


MAX_EXPERIMENT_NAME = 500  # MLflow's limit on an experiment's name (mlflow.utils.validation)


def checked_experiment_name(value: str) -> str:
    """An MLflow experiment name MLflow takes and a user can tell apart from another: refused when the file is read.

    Why: MLflow refuses an empty name (and one over 500 characters) only when the run starts, after
    the run record was written; a name of spaces only, or with spaces around it, is taken but reads
    as no name, or as another experiment's, in `relay runs` and the MLflow UI.
    """
    if not value.strip():
        raise ValueError(
            f"expected a non-empty experiment name, got {value!r}; give one, or leave tracking.experiment out "
            "to use the default, relay"
        )
    if value != value.strip():
        raise ValueError(
            f"{value!r} begins or ends with spaces, which MLflow keeps: it would be another experiment than "
            f"{value.strip()!r}; remove the spaces"
        )
    if len(value) > MAX_EXPERIMENT_NAME:
        raise ValueError(
            f"expected at most {MAX_EXPERIMENT_NAME} characters (MLflow's limit), got {len(value)}; give a shorter name"
        )
    return value


# The words ray.init takes instead of an address: find the machine's running cluster, or start one.
RAY_ADDRESS_WORDS = ("auto", "local")


def ray_address_problem(address: str, key: str) -> str | None:
    """Why ``address`` is not a Ray cluster address a driver can join, or None: HOST:PORT (ray:// allowed).

    Checked for form only (``orchestrator.cli.run.run_locations`` checks that something answers):
    ray.init takes a malformed address as far as its retry loop and then fails with a trace.
    """
    if address in RAY_ADDRESS_WORDS:
        return None
    if address.startswith(("http://", "https://")):
        return (
            f"{key}: {address} is a dashboard URL; a driver joins a cluster at its GCS address HOST:6379 "
            "(as `ray status` prints it). To run on a cluster as a Ray job, use `relay submit CONFIG --address "
            "http://HOST:8265`"
        )
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    unbracketed = host.startswith("[") != host.endswith("]") or host.count("[") > 1  # `[::1` (no `]:PORT`)
    if not colon or not host or "/" in host or unbracketed or not port.isdigit() or not 1 <= int(port) <= 65535:
        return (
            f"{key}: {address!r} is not a Ray cluster address; write HOST:PORT with a port from 1 to 65535, "
            "e.g. 10.0.0.5:6379 (the GCS address `ray status` prints on the head node)"
        )
    return None


def checked_ray_address(value: str | None) -> str | None:
    """``run.ray_address`` when it is a cluster address (``ray_address_problem``) or null; ValueError otherwise."""
    problem = None if value is None else ray_address_problem(value, "run.ray_address")
    if problem:
        raise ValueError(problem.removeprefix("run.ray_address: "))
    return value


# A size in bytes as a config writes it: 2000000000, 2GB, 1.5 GiB, 512MiB (K/M/G/T decimal, Ki/Mi/Gi/Ti binary).
SIZE_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*", re.IGNORECASE)
SIZE_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}
OBJECT_STORE_MINIMUM_BYTES = 75 * 1024 * 1024  # the smallest object store ray.init accepts (Ray's own floor)


def size_in_bytes(value: Any) -> Any:
    """``value`` in bytes when it is a size (a whole number, or text such as ``2GB``); anything else as it came.

    Why text: an object store is sized in gigabytes, and 2000000000 is easy to get a digit wrong in.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return value
    match = SIZE_PATTERN.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not a size; write bytes (2000000000) or a number with a unit: 2GB, 1.5GB, 512MiB "
            "(K, M, G, T count in 1000s; Ki, Mi, Gi, Ti in 1024s)"
        )
    return int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "").lower()])


def checked_object_store_size(value: int | None) -> int | None:
    """``run.object_store_memory`` when Ray can start an object store of that size (or null); ValueError otherwise."""
    if value is not None and value < OBJECT_STORE_MINIMUM_BYTES:
        raise ValueError(
            f"{value} bytes is below the smallest object store Ray starts ({OBJECT_STORE_MINIMUM_BYTES} bytes, "
            "75MiB); give at least 75MiB, e.g. 1GB, or null for Ray's default"
        )
    return value
