"""`relay data import SOURCE DEST` and `relay data info DEST`: datasets as shards on any storage.

The CLI names no dataset: the sources, the format and the checks come from the `DataSpec` the
installed pipelines carry (orchestrator.registry), found the same way the pipelines are. Bad input
(an unknown source, an image that does not decode, a destination holding another dataset, shards
that do not match their manifest) exits 2 with the message; the import leaves nothing behind. The
storage failing once the import wrote exits 1 with what DEST still holds and how to start again.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from orchestrator.cli.common import pipelines_of
from orchestrator.cli.preflight import folder_problem
from orchestrator.engine.signals import EXIT_TERMINATED, Terminated, terminate_as_interrupt
from orchestrator.engine.store_faults import (
    UNREACHABLE_FIX,
    StoreFault,
    innermost_first_line,
    store_failure,
    store_fault,
)
from orchestrator.errors import ConfigError, RelayError
from orchestrator.registry import DataSpec, PipelineSpec, data_specs, load_pipelines


def _specs(args: argparse.Namespace) -> list[DataSpec]:
    specs = data_specs(pipelines_of(args))
    if not specs:
        raise ConfigError(
            ["no installed pipeline package declares datasets (is Relay installed? `pip install -e .`)"], "relay data"
        )
    return specs


def _checked(fn: Callable[..., Mapping[str, Any]], dest: str, *args: Any) -> Mapping[str, Any]:
    """Run a DataSpec function on ``dest``; its bad-input errors (ValueError, OSError) become exit 2 with their
    message, and an error marked ``store_failed`` (the storage failed once the import wrote) exit 1.

    Storage that refuses the credentials is said so here, with the classifier the run's checks use:
    the dataset code, which imports nothing of the orchestrator, called it unreachable.
    """
    try:
        return fn(dest, *args)
    except (ValueError, OSError) as exc:
        if getattr(exc, "store_failed", False):
            raise RelayError(f"{dest}: the import failed because {_store_fault(dest, exc)}; {exc}") from exc
        if store_fault(exc) is StoreFault.DENIED:
            raise ConfigError([str(store_failure(dest, exc))], "relay data") from exc
        raise ConfigError([str(exc)], "relay data") from exc


def _store_fault(dest: str, exc: BaseException) -> str:
    """Why the storage failed mid-import, in words: it stopped answering, refused access, or failed to write."""
    fault = store_fault(exc)
    if fault is StoreFault.UNREACHABLE:
        return f"the store stopped answering ({innermost_first_line(exc)}); {UNREACHABLE_FIX}"
    if fault is StoreFault.DENIED:
        return str(store_failure(dest, exc))
    return f"the store failed to write ({innermost_first_line(exc)})"


def _print(summary: Mapping[str, Any]) -> None:
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")


def destination_problem(dest: str) -> str | None:
    """Why a local DEST cannot be a folder this import writes in (a file, a path under a file, no permission).

    Checked before the source is read. A folder that already holds something is left to the
    import: the same dataset, unchanged, is a no-op; what an unfinished import left (its marker
    says so) is cleared and imported again; anything else, Parquet files included, is refused
    with nothing written or deleted.
    """
    path = dest.removeprefix("file://") if dest.startswith("file://") else None if "://" in dest else dest
    if path is None:
        return None  # remote storage: the import asks it before reading the source
    try:
        folder = Path(path).expanduser()
        if folder.is_dir() and any(folder.iterdir()):
            return None
    except (OSError, ValueError):
        pass  # folder_problem names it
    return folder_problem(path, "DEST")


def _spec_for(
    source: str, specs: Sequence[DataSpec], pipelines: Mapping[str, PipelineSpec]
) -> tuple[DataSpec | None, str | None]:
    """The installed package (its DataSpec) that imports SOURCE, or why none can: (spec, None) or (None, problem).

    A source name goes to the package whose ``sources`` declare it; anything else (a folder, a URI) to the
    one package whose ``claims`` accepts it. Why not the first claiming spec in pipeline-name order: Relay's
    own claimed every folder, so a plug-in's folder source was never reached and its folder was refused with
    Relay's sources alone. Two packages that both take SOURCE are refused, both named, rather than one picked
    by the order of their pipelines' names: which one imports the folder would then change with what else is
    installed, and the same command line would make another dataset.
    """
    named = [spec for spec in specs if source in spec.sources]
    found = named or _claimants(source, specs)
    if len(found) == 1:
        return found[0], None
    if not found:
        return None, _unclaimed(source, specs)
    packages = " and ".join(_package(spec, pipelines) for spec in found)
    if named:
        return None, (
            f"SOURCE {source!r} is a source name more than one installed package declares ({packages}); "
            "uninstall the package whose source you do not mean (or rename its source), then import again"
        )
    return None, (
        f"SOURCE {source!r} is read by more than one installed package ({packages}), each in its own way; "
        f"nothing was imported. {_how_to_choose(found)}"
    )


def _claimants(source: str, specs: Sequence[DataSpec]) -> list[DataSpec]:
    """The packages whose ``claims`` accept SOURCE; of a remote URI (s3://, gs://) that Relay's own and another
    package claim, the other package(s) alone.

    Why: Relay's own claims every remote URI unchecked, since whether one holds a Relay dataset is known only by
    asking the store, which for an endpoint that does not answer waits out its timeouts; a plug-in that claims
    the URI has looked at it, and its claim is the specific one. A local path or file:// URI Relay's own claims
    only for what it reads there, so two claims on one are both meant, and refused.
    """
    found = [spec for spec in specs if spec.claims(source)]
    if len(found) > 1 and "://" in source and not source.startswith("file://"):
        return [spec for spec in found if not _relays_own(spec)]
    return found


def _relays_own(spec: DataSpec) -> bool:
    """Whether ``spec`` comes with Relay itself: the module of its import function is in the distribution that
    holds this package (an installed plug-in's is in its own)."""
    return getattr(spec.import_dataset, "__module__", "").partition(".")[0] in _relay_packages()


@functools.cache
def _relay_packages() -> frozenset[str]:
    """The top-level packages of the installed distribution that holds this one (Relay's: orchestrator, pipelines,
    ...); none where it runs from a folder no distribution records."""
    by_package = metadata.packages_distributions()
    relay = set(by_package.get(__name__.partition(".")[0], ()))
    return frozenset(package for package, distributions in by_package.items() if relay & set(distributions))


def _how_to_choose(found: Sequence[DataSpec]) -> str:
    """The advice to a SOURCE several packages read: a folder of one source's files; uninstalling the other
    package, unless the other is Relay itself, which `relay` needs."""
    if not any(_relays_own(spec) for spec in found):
        return (
            "Pass a folder holding only the files of the source you mean (a copy, or links to them), or uninstall "
            "the other package"
        )
    relay = next(spec for spec in found if _relays_own(spec))
    plugins = " or ".join(f"sources {', '.join(spec.sources)}" for spec in found if spec is not relay)
    return (
        f"The one with sources {', '.join(relay.sources)} is Relay itself (keep it installed). Pass a folder "
        "holding only the files of the source you mean (a copy, or links to them): for the plug-in (the one with "
        f"{plugins}), one without what Relay reads there (a dataset.json, or a folder laid out as one of Relay's "
        "sources: `relay data import -h` says how); for Relay, one without the plug-in's files"
    )


def _unclaimed(source: str, specs: Sequence[DataSpec]) -> str:
    """Why no installed package imports SOURCE, with every package's sources (not only those of the first)."""
    if "://" in source or Path(source).expanduser().is_dir():
        valid = ", ".join(f"{name} ({text})" for spec in specs for name, text in spec.sources.items())
        return f"SOURCE {source!r} is neither a source name nor a folder one recognises; valid: {valid}"
    valid = "; ".join(f"{name}: {text}" for spec in specs for name, text in spec.sources.items())
    return f"SOURCE {source!r}: not a source name nor an existing folder; valid sources: {valid}"


def _package(spec: DataSpec, installed: Mapping[str, PipelineSpec]) -> str:
    """A package by what the user knows of it: its sources, and the pipelines that carry it (the first three)."""
    carriers = sorted(name for name, pipeline in installed.items() if pipeline.data is spec)
    shown = ", ".join(carriers[:3]) + (", ..." if len(carriers) > 3 else "")
    return f"the one with sources {', '.join(spec.sources)}, of pipeline(s) {shown}"


def cmd_import(args: argparse.Namespace) -> int:
    spec, problem = _spec_for(args.source, _specs(args), pipelines_of(args))
    problems = [problem for problem in (problem, destination_problem(args.dest)) if problem]
    if problems:
        raise ConfigError(problems, "relay data")
    options = {"encoding": args.encoding, "image_size": args.image_size, "rows_per_group": args.rows_per_group}
    try:
        with _sigterm_as_interrupt():
            summary = _checked(lambda dest: spec.import_dataset(args.source, dest, options), args.dest)
    except Terminated:  # the import said it was interrupted, what it left and how to start again
        return EXIT_TERMINATED
    _print(summary)
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A SIGTERM during the block raises ``Terminated`` (exit 143), as it does in `relay run`; the handler before
    it is put back after.

    Why: SIGTERM (kill, timeout, Slurm, Kubernetes) ended the import at once, exit 143 with nothing said, and left
    DEST holding its in-progress marker and partial shards. Raised as an exception, it goes through the cleanup
    and the one line a Ctrl-C gets. Only the main thread can set a handler; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    terminate_as_interrupt()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_info(args: argparse.Namespace) -> int:
    problems = []
    for spec in _specs(args):  # one spec per format; the first that reads DEST answers
        try:
            summary = _checked(spec.describe, args.dest, args.verify)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        _print(summary)
        return 0
    raise ConfigError(problems[:1], "relay data")


def import_description(specs: list[DataSpec]) -> str:
    """`relay data import --help`'s description, naming the sources the installed packages register.

    Why derived: a hand-kept list ("digits, synthetic ... an ImageFolder") left out a source a package added.
    """
    sources = "; ".join(f"{name}: {text}" for spec in specs for name, text in spec.sources.items())
    return (
        f"SOURCE: a source name or a folder one of these sources reads ({sources or 'none installed'}); or a "
        "Relay dataset (a path or URI holding dataset.json), copied to DEST as it is, digest and all. DEST: a "
        "local path or any pyarrow URI (s3://bucket/prefix). Then run a pipeline with data.name=parquet data.uri=DEST."
    )


class _ImportHelp(argparse.Action):
    """-h for `relay data import`: the description is built when help is asked for, from the installed
    pipelines' DataSpecs, so every other command line loads no pipeline package to build its parser."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        parser.description = import_description(data_specs(load_pipelines()))
        parser.print_help()
        parser.exit()


# What each --encoding stores and when to pick it (pipelines/datasets/codec.py, RAW_MAX_BYTES for auto).
ENCODING_HELP = (
    "how the images are stored. auto (default): raw for images of up to 12 KB (64x64 RGB), png above. raw: "
    "uncompressed pixels, the fastest to read; for small images (CIFAR's 32x32). png: lossless and 2-4x smaller on larger "
    "photos, but decoded image by image; for large images, or when storage and transfer cost more than CPU"
)


def register(commands: Any) -> None:
    about = "import a dataset as Parquet shards (any storage); describe one"
    data = commands.add_parser("data", help=about, description=about)
    sub = data.add_subparsers(dest="data_command", required=True, metavar="{import,info}")
    about = "stream SOURCE into Parquet shards at DEST"  # --help lists the sources (_ImportHelp)
    imp = sub.add_parser("import", help=about, description=about, add_help=False)
    imp.add_argument("-h", "--help", action=_ImportHelp, help="show this help message and exit")
    imp.add_argument("source", help="a source name, a dataset folder, or a Relay dataset to copy (see above)")
    imp.add_argument("dest", help="where the shards go: a path or a pyarrow URI (s3://bucket/prefix)")
    imp.add_argument("--encoding", choices=("auto", "raw", "png"), default="auto", help=ENCODING_HELP)
    imp.add_argument("--image-size", type=int, help="resize image folders to this square size (4-1024, default 32)")
    imp.add_argument("--rows-per-group", type=int, help="rows a reader fetches at once (default: about 1 MB)")
    imp.set_defaults(handler=cmd_import)
    about = "what a dataset at DEST holds, after checking it"
    info = sub.add_parser("info", help=about, description=about)
    info.add_argument("dest", help="the dataset: a path or a pyarrow URI")
    info.add_argument("--verify", action="store_true", help="also hash every shard and decode every image")
    info.set_defaults(handler=cmd_info)
