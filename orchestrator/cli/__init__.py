"""`relay`: the command line and the composition root that wires pipelines to the engine.

Exit codes: 0 success, 1 a stage or the cluster failed (the resume command is printed),
2 bad input (config, overrides, paths): nothing is written for bad input; 130 Ctrl-C and 143
SIGTERM of `relay run`/`resume` once Ray is up (a run says how to resume), 141 stdout closed by its
reader (`relay runs | head -1`).

Each command group lives in its own module, grouped by area in a subpackage (``run.pipeline``,
``records.generations``, ``sweeps.tune``, ``jobs.cluster``; ``data`` here), and adds its subcommands
through ``register``; this module parses, dispatches and maps errors to exit codes. Pipelines come
from the ``relay.pipelines`` entry points, or from the mapping given to ``main`` (tests, embedding).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

from orchestrator.cli import data
from orchestrator.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, locations_as_overrides
from orchestrator.cli.jobs import cluster
from orchestrator.cli.records import cleanup, compare, generations, runs, workspace
from orchestrator.cli.run import pipeline
from orchestrator.cli.sweeps import tune
from orchestrator.engine.signals import interrupts_outside_imports
from orchestrator.errors import InputError, RelayError
from orchestrator.registry import PipelineSpec

QUIET_LOGGERS = ("ray", "alembic", "filelock", "matplotlib", "torch")
# urllib3 logs every HTTP retry at WARNING ("Retrying (...) after connection broken"): against a tracking
# server that went away, a dozen lines Relay already says in one (orchestrator/tracking/mlflow_tracker.py).
LOUD_ONLY_WHEN_FAILING = ("urllib3",)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `yes | head -1` reports for `yes`
MLFLOW_LEVEL_ENV = "MLFLOW_LOGGING_LEVEL"  # MLflow sets its own logger's level from it when it is imported
# MLflow's database layer logs a whole SQLAlchemy traceback at ERROR for every failed write (a full
# disk: hundreds of lines) before raising; Relay words each failed MLflow call on one line already.
MLFLOW_TRACEBACK_LOGGERS = ("mlflow.store.db.utils", "mlflow.system_metrics")  # the monitor's, on a dead server
# ANSI escape sequences: CSI (colours, `\x1b[32m`; cursor moves) and OSC (`\x1b]8;;URL\x07` links, titles)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay", description="Multi-generation training pipelines on Ray, tracked in MLflow."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    pipeline.register(commands)
    tune.register(commands)
    generations.register_generations(commands)
    runs.register(commands)
    cleanup.register(commands)
    compare.register(commands)
    workspace.register(commands)
    data.register(commands)
    cluster.register(commands)
    for subparser in commands.choices.values():  # its own usage for an error after the command's name
        subparser.set_defaults(command_parser=subparser)
    return parser


def configure_logging(verbose: bool) -> None:
    """Relay at INFO (DEBUG with -v); other libraries at WARNING; MLflow at WARNING unless -v.

    MLflow configures its own logger (own handler, INFO) when it is first imported, which
    happens later, on the tracking thread, so a level set here would be overwritten; it reads
    MLFLOW_LOGGING_LEVEL instead, and so do Ray workers, which inherit the environment.
    Without this its system-metrics monitor logs four lines per stage.
    """
    plain_console()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in LOUD_ONLY_WHEN_FAILING:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR)
    quiet_mlflow(verbose)
    plain_worker_prefixes()
    ray_notices_skipped()


def quiet_mlflow(verbose: bool) -> None:
    """MLflow at WARNING unless -v, through MLFLOW_LOGGING_LEVEL as well as its loggers (see configure_logging);
    the tracebacks its store and system-metrics monitor log on a dead server only with -v."""
    mlflow_level = "INFO" if verbose else "WARNING"
    os.environ[MLFLOW_LEVEL_ENV] = mlflow_level
    logging.getLogger("mlflow").setLevel(mlflow_level)  # in case MLflow is already imported (tests, embedding)
    for name in MLFLOW_TRACEBACK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.CRITICAL)


def plain_worker_prefixes() -> None:
    """Ray's `(g00/filter pid=N)` prefix on the lines of a stage's worker without colour codes off a terminal.

    Why: Ray colours the prefix whatever the output is, so a log file or CI output held escape codes
    around it (`^[[36m(g00/filter pid=2570)^[[0m`). RAY_COLOR_PREFIX=0 is Ray's switch; a value the user
    set is kept.
    """
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


# Ray's notices about its own internals that its workers print on every data-parallel stage: a C++ line at ERROR
# level on Ray Train's PreemptionWatcher actor (`core_worker.cc: Actor with class name: 'PreemptionWatcher' ... has
# constructor arguments in the object store and max_restarts > 0 ... See https://github.com/ray-project/ray/issues/
# 53727`), and one line a rank of Ray Train's report (`Reporting training result 1: TrainingReport(checkpoint=...`),
# logged where Ray Train's own log level does not reach (``train_run.TRAIN_CONSOLE_LEVEL`` quiets the rest).
RAY_NOTICES = (
    r"Actor with class name: 'PreemptionWatcher' .* has constructor arguments in the object store"
    r"|Reporting training result \d+: TrainingReport\("
)


def ray_notices_skipped() -> None:
    """Ray's notices about its own internals (``RAY_NOTICES``) are left out of the worker lines Ray prints here.

    Why: every data-parallel stage printed Ray's C++ error line about Ray Train's PreemptionWatcher actor (a
    restart caveat of Ray's own, with a link to Ray's issue tracker), which reads as a failure of the run and
    that no Relay user can act on, and a line a rank with Ray Train's report object. RAY_DEDUP_LOGS_SKIP_REGEX
    is Ray's switch (its log deduplicator drops matching lines; Ray reads it when imported, so this runs
    first); a value the user set is kept.
    """
    os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", RAY_NOTICES)


class PlainText:
    """A text stream that writes what it is given without ANSI escape codes; the rest is the stream's own."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(ANSI_ESCAPE.sub("", text))
        return len(text)  # what the caller gave: a count of what was written would say some of it was lost

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def plain_console() -> None:
    """Off a terminal, stdout and stderr carry no ANSI escape codes; a terminal keeps its colours.

    Why: Ray prints a worker's repeated line as one `... [repeated 3x across cluster]` in green whatever its
    output is, with no switch to turn the colour off (RAY_COLOR_PREFIX covers only the `(g00/train pid=N)`
    prefix), so a job's log (what `relay logs` shows) and `relay run > run.log` held `^[[32m` around it.
    Ray prints its workers' lines to whatever ``sys.stdout`` and ``sys.stderr`` are when it prints.
    """
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, PlainText) and not _is_terminal(stream):
            setattr(sys, name, PlainText(stream))


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Let `key=value` overrides stand anywhere, also after options such as --stop-after."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None, pipelines: Mapping[str, PipelineSpec] | None = None) -> int:
    """Run one command; ``argv`` None means this process's own command line (the `relay` script).

    ``pipelines`` replaces the installed entry points (tests, embedding). Then `relay run` /
    `relay resume` end the process here once they return: they have already closed MLflow
    (every write landed) and stopped Ray, and tearing down the interpreter (collecting
    torch's, Ray's and MLflow's module graphs) cost 3-5 s more.
    """
    args = parse_arguments(build_parser(), argv)
    args.pipelines = pipelines
    configure_logging(args.verbose)
    try:
        with interrupts_outside_imports():
            code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at interpreter exit
    except KeyboardInterrupt:  # Ctrl-C: what was cut off said so (`relay run`: how to resume); no traceback
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # `relay runs | head -1`: the reader has what it wanted
        code = _stdout_closed()
    if argv is None and getattr(args, "ends_process", False):
        exit_now(code)
    return code


def _stdout_closed() -> int:
    """Point stdout at /dev/null so the flush at exit cannot raise again; exit as a SIGPIPE-ended program does.

    The standard way (Python's signal docs, "Note on SIGPIPE"): the reader went away, which is
    not an error worth a traceback.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def exit_now(code: int) -> None:
    """End the process without interpreter teardown, after flushing what it printed and logged."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    """The command's exit code; bad input and failures become messages, not tracebacks."""
    try:
        if getattr(args, "locations_as_overrides", False):
            locations_as_overrides(args)
        return args.handler(args)
    except InputError as exc:  # a config, an argument, a path, a setting: checked before anything was written
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RelayError as exc:  # a stage, the tracking store or the cluster failed
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_FAILED
