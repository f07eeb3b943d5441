"""The edge of every call of the Python API: its arguments checked and turned into what `relay` parses,
MLflow's loggers quieted while it runs, and the caller's environment given back when it ends.

Apart from the calls themselves (``running``, ``reading``, ``models``), which each go through these
first: a wrong type is refused here, naming the argument, before it reaches the CLI's code.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import operator
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.cli import MLFLOW_TRACEBACK_LOGGERS, build_parser, quiet_mlflow
from orchestrator.errors import InputError

PathLike = str | Path


# The positional arguments `relay COMMAND` requires: placeholders, replaced by the call's values.
POSITIONALS = {"run": ["CONFIG"], "resume": ["RUN_ID"]}


@contextlib.contextmanager
def mlflow_quieted() -> Iterator[None]:
    """MLflow's loggers as `relay` sets them without -v (``configure_logging``), for one call; then as they were,
    and the caller's environment given back (``environment_kept``).

    Why: MLflow logs at INFO through its own handler, so a notebook printed what the CLI hides:
    "Creating initial MLflow database tables...", and the system-metrics monitor's start and stop
    lines for every stage. Only MLflow's loggers and MLFLOW_LOGGING_LEVEL (which MLflow reads when
    it is first imported, and Ray's workers inherit) change, and only while the call runs: the
    caller's root logger, its handlers and its levels stay theirs.
    """
    levels = {name: logging.getLogger(name).level for name in ("mlflow", *MLFLOW_TRACEBACK_LOGGERS)}
    with environment_kept():
        quiet_mlflow(verbose=False)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """Every environment variable as the call found it once it returns or raises: its value, or its absence.

    Why: a run left the notebook's process with what Relay and Ray set for it: MLflow's client
    settings (MLFLOW_HTTP_REQUEST_TIMEOUT=20 and its retries, MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT),
    RAY_AUTH_MODE, RAY_USAGE_STATS_ENABLED, and Ray's PYTHONBREAKPOINT, after which the caller's own
    ``breakpoint()`` no longer opened pdb. The `relay` command's process ends with its run, so they
    never outlived it there. Each call sets what it needs again.
    """
    before = dict(os.environ)
    try:
        yield
    finally:
        for name in [name for name in os.environ if name not in before]:
            del os.environ[name]
        for name, value in before.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def command_args(command: str, **values: Any) -> argparse.Namespace:
    """The arguments `relay COMMAND` parses, every option at its CLI default, then ``values`` set.

    Parsed by the CLI's own parser, so an option added to the command has its default here too;
    a value for an option the command no longer has is a TypeError (the API fell behind the CLI).
    """
    args = build_parser().parse_args([command, *POSITIONALS.get(command, [])])
    unknown = sorted(set(values) - set(vars(args)))
    if unknown:
        raise TypeError(f"`relay {command}` has no option {', '.join(unknown)}")
    vars(args).update(values)
    args.pipelines = None  # the installed entry points, as for `relay`
    return args


# --- the arguments' types ------------------------------------------------------------------
# Why at the edge: the CLI's parser hands its handlers strings and lists of strings, so a str where
# the API takes a list (overrides) or a str where it takes an int (generation) reached code that
# failed far from the call (a raw ValueError, or one problem per character of the string).


def checked_generation(generation: Any) -> int:
    """``generation`` as an int >= 0 (a numpy integer too); InputError naming the argument otherwise."""
    try:
        number = operator.index(generation) if not isinstance(generation, bool) else None
    except TypeError:
        number = None
    if number is None or number < 0:
        raise InputError(
            f"generation: expected an int >= 0 (0 is the first generation), got {type(generation).__name__} "
            f"{generation!r}; pass a whole number such as 0"
        )
    return number


def checked_overrides(overrides: Any) -> list[str]:
    """``overrides`` as a list of strings; a single string (a common slip) is refused naming the list to pass."""
    if isinstance(overrides, str):
        raise InputError(
            f"overrides: expected a list of 'key=value' strings, got the string {overrides!r}; pass [{overrides!r}]"
        )
    if not isinstance(overrides, Sequence) or not all(isinstance(item, str) for item in overrides):
        raise InputError(
            f"overrides: expected a list of 'key=value' strings such as ['train.steps=60'], got {overrides!r}"
        )
    return list(overrides)


def checked_path(argument: str, value: Any) -> PathLike | None:
    """``value`` when it is None, a str or a path (``pathlib.Path``); InputError naming ``argument`` otherwise."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise InputError(
            f"{argument}: expected a path (a str or pathlib.Path), got {type(value).__name__} {value!r}; "
            f"pass the folder, e.g. {argument}='relay-workspace'"
        )
    return value


def checked_config_argument(config: Any) -> None:
    """``config``: a path to a pipeline file, or the file's content as a mapping."""
    if not isinstance(config, (str, os.PathLike, Mapping)):
        raise InputError(
            f"config: expected a pipeline file's path (a str or pathlib.Path) or its content as a mapping, "
            f"got {type(config).__name__} {config!r}"
        )


def checked_texts(**values: Any) -> None:
    """Each of ``values`` (argument name -> value) None or a str; InputError naming the first that is not."""
    for argument, value in values.items():
        if value is not None and not isinstance(value, str):
            raise InputError(f"{argument}: expected a str, got {type(value).__name__} {value!r}")


def checked_flag(argument: str, value: Any) -> None:
    """A yes/no argument: a bool, never a truthy stand-in such as the string 'false' (which ran as True)."""
    if not isinstance(value, bool):
        raise InputError(f"{argument}: expected a bool (True or False), got {type(value).__name__} {value!r}")


def checked_reader_args(run_id: Any, workspace: Any, artifact_uri: Any) -> None:
    """The arguments every reader takes: a run id (a str), a workspace path, an artifact store URI."""
    if not isinstance(run_id, str):
        raise InputError(
            f"run_id: expected a Relay run id (a str such as 'smoke-20260101-120000-ab12', the RunResult's "
            f"run_id), got {type(run_id).__name__} {run_id!r}"
        )
    checked_path("workspace", workspace)
    checked_texts(artifact_uri=artifact_uri)


def as_flag(path: PathLike | None) -> str | None:
    """A path as the CLI's flags carry it (a string), None left None."""
    return None if path is None else str(path)
