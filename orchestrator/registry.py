"""How pipelines reach the engine: a `PipelineSpec` per pipeline, found through an entry-point group.

The engine and the CLI know no algorithm. A package makes pipelines available by declaring,
in its pyproject.toml,

    [project.entry-points."relay.pipelines"]
    anything = "my_package.module:OBJECT"

where OBJECT is one `PipelineSpec` or a mapping of name -> `PipelineSpec`. Relay's own
pipelines are declared that way too (pipelines.registry:PIPELINES), so a user's package adds a
pipeline exactly as Relay does, without forking it. Callers that want a fixed set (tests,
embedding) pass their own mapping instead of calling `load_pipelines`.

Datasets come the same way: a spec's `data` (a `DataSpec`) says which sources its package can
import as shards and how (`relay data import`, `relay data info`), so the CLI names no dataset
either. Relay's pipelines all carry the one `DataSpec` of pipelines.datasets.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from orchestrator.dag import Pipeline
from orchestrator.errors import ConfigError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "relay.pipelines"


@dataclass(frozen=True)
class DataSpec:
    """What `relay data` needs from the package that defines a dataset format and its sources.

    ``sources``: source name -> what SOURCE is for it (help and error text). ``claims(source)``:
    whether this package reads SOURCE (a source name, or a folder it may recognise).
    ``import_dataset(source, dest, options)`` streams SOURCE into a dataset at ``dest`` (any
    pyarrow URI) and ``describe(uri, verify)`` checks one; both return ``label -> text`` lines to
    print. Bad input (an unknown source, an undecodable image, a destination that holds another
    dataset, shards that do not match their manifest) raises ValueError or OSError with a message
    that names the problem: the CLI exits 2 with it. ``pins(config)``: what a checked config leaves to
    the data, pinned, as dotted keys to write into the file (``{"data.digest": ...}``): a run's
    stage cache keys its data by the config, so a dataset imported again at the same URI must not
    meet the old one's cached stages, and a default the dataset decides is saved as what ran.
    ``elsewhere(config)``: the setting naming a local folder this machine lacks (``data.root: /mnt/x``),
    or None; `relay submit` then leaves the data's checks to the job, on the machines that hold it.
    ``by_number(config)``: settings that name things of the data by name (``data.classes: [cat, dog]``) as
    the numbers the stages use, dotted keys to write into the file before the preflight; a name the
    data lacks is a ValueError naming what it has.
    """

    sources: Mapping[str, str]
    claims: Callable[[str], bool]
    import_dataset: Callable[[str, str, Mapping[str, Any]], Mapping[str, Any]]
    describe: Callable[[str, bool], Mapping[str, Any]]
    pins: Callable[[Any], Mapping[str, Any]] = field(default=lambda config: {})
    elsewhere: Callable[[Any], str | None] = field(default=lambda config: None)
    by_number: Callable[[Any], Mapping[str, Any]] = field(default=lambda config: {})


CONFIG_BASE = "orchestrator.config.PipelineConfig"
CONFIG_FIELDS = ("pipeline", "name", "seed", "run", "tracking", "tune")  # CONFIG_BASE's fields: Relay reads them


def config_model_problem(model: Any) -> str | None:
    """What a pipeline's config model lacks of the fields Relay reads from every file (CONFIG_FIELDS), or None.

    Checked by name, not by base class, so that a model redeclaring the fields (a narrower
    ``pipeline``, its own ``seed`` bounds) serves as well as a subclass of CONFIG_BASE. Why: a
    plug-in's model without ``run`` ended `relay validate` in an AttributeError traceback.
    """
    fields = getattr(model, "model_fields", None)
    if not isinstance(model, type) or not isinstance(fields, Mapping):
        return f"its config model {model!r} is not a pydantic model; derive it from {CONFIG_BASE}"
    lacking = [name for name in CONFIG_FIELDS if name not in fields]
    if not lacking:
        return None
    return (
        f"its config model {model.__name__} lacks {', '.join(lacking)}, which Relay reads from every pipeline file; "
        f"derive it from {CONFIG_BASE} (fields {', '.join(CONFIG_FIELDS)}) and add the pipeline's own sections"
    )


@dataclass(frozen=True)
class PipelineSpec:
    """What the CLI needs to run one kind of pipeline (`pipeline: NAME` in a config file).

    ``config_model`` validates the whole file: a pydantic model deriving from
    ``orchestrator.config.PipelineConfig``, whose fields (``pipeline``, ``name``, ``seed``, ``run``,
    ``tracking``, ``tune``) Relay reads from every file, plus the pipeline's own sections; a spec whose
    model lacks them is refused when its pipeline is chosen (``get_pipeline``), naming what to
    derive from. ``build`` unrolls a validated config into a static DAG; ``preflight`` returns the problems only the data can reveal (a
    missing root, too few images) as ``key: message`` lines, before anything is written.
    ``summary``: column header -> metric that `relay generations` shows per generation; a metric
    ending in ``/*`` shows every metric with that prefix in one column. Metrics are named
    ``<stage role>/<metric>`` by the tracker. The first single metric is the run's headline
    (higher is better): `relay runs` shows its best value over the generations. ``data``: the
    datasets the pipeline's package imports and reads (`relay data`), or None.
    ``reference_generations``: generations that train what the result starts from (a teacher, a
    source-task or old-task model), not a result of the pipeline: `relay runs` leaves them out of
    the headline's best value, which a teacher that outscores its student would otherwise claim.

    ``pyfunc_loader``: the module MLflow's python_function flavour loads the pipeline's models with
    (its ``_load_pyfunc(path)`` takes the stored checkpoint file), named in every MLmodel file the
    tracker logs, so ``mlflow.pyfunc.load_model("models:/NAME@gen-NN")`` predicts; the module is named,
    not imported, because the driver that logs models never imports torch. None: models are logged as
    their checkpoints with an MLmodel file that carries the signature and no python_function flavour,
    which MLflow's pyfunc refuses to load, and ``relay.model`` / ``relay.predict`` refuse the run.
    ``input_shape(config)``: ``(C, H, W)`` of the images a run of that config trained on, which
    ``relay.input_shape`` answers and ``relay.predict`` checks images against (it may raise ValueError:
    data it cannot read). None: ``relay.input_shape`` refuses the run, and ``relay.predict`` leaves the
    shape to the model's own signature and loader. Why on the spec: the engine knows no pipeline, so a
    plug-in's models are loaded by its own code, never by Relay's.
    """

    name: str
    config_model: type
    build: Callable[[Any], Pipeline]
    preflight: Callable[[Any], list[str]] = field(default=lambda config: [])
    summary: Mapping[str, str] = field(default_factory=dict)
    data: DataSpec | None = None
    reference_generations: frozenset[int] = frozenset()
    pyfunc_loader: str | None = None
    input_shape: Callable[[Any], tuple[int, int, int]] | None = None


class LoadedPipelines(dict[str, PipelineSpec]):
    """The pipelines the entry points declare, by name; ``rejected``: name -> why a declared one cannot run.

    A pipeline whose config model lacks the fields Relay reads (``config_model_problem``) is
    kept out, and its reason kept for ``get_pipeline``: said once, when a file picks it, not on
    every command (the other pipelines run as before). ``unloadable``: entry-point name -> why the
    entry point could not be loaded (its module failed to import, its object is no spec); its
    pipelines' names are unknown then, and the entry point's name is the likeliest one a file gives.
    """

    def __init__(
        self,
        specs: Mapping[str, PipelineSpec] = (),
        rejected: Mapping[str, str] = (),
        unloadable: Mapping[str, str] = (),
    ) -> None:
        super().__init__(specs)
        self.rejected: dict[str, str] = dict(rejected)
        self.unloadable: dict[str, str] = dict(unloadable)


@functools.cache
def load_pipelines() -> LoadedPipelines:
    """Every pipeline declared in the ``relay.pipelines`` entry-point group, by name.

    A broken entry point (an import error, an object that is not a spec) is skipped with a
    warning naming it, so one bad plug-in does not take the others down, and its reason is kept in
    ``unloadable`` for ``get_pipeline``; two pipelines with one name keep the first and warn. A spec
    whose config model cannot serve (``config_model_problem``) is left out with its reason in
    ``rejected``, naming the plug-in and its entry point.
    """
    found = LoadedPipelines()
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            specs = _specs_of(entry)
        except _Unloadable as exc:  # a plug-in's own import error: report it, keep the others
            logger.warning(
                "ignoring entry point %s = %s in group %s: %s", entry.name, entry.value, ENTRY_POINT_GROUP, exc.cause
            )
            found.unloadable[entry.name] = f"{_declared_by(entry)}, but {exc}"
            continue
        for spec in specs:
            if spec.name in found or spec.name in found.rejected:
                logger.warning(
                    "pipeline %r is declared twice (entry point %s); keeping the first", spec.name, entry.name
                )
                continue
            problem = config_model_problem(spec.config_model)
            if problem:
                found.rejected[spec.name] = f"{_declared_by(entry)}, cannot run: {problem}"
                continue
            found[spec.name] = spec
    return found


def _declared_by(entry: metadata.EntryPoint) -> str:
    """``the plug-in relay-toy 0.1 declares it (entry point toybare = relay_toy:BARE in group relay.pipelines)``."""
    dist = getattr(entry, "dist", None)
    package = f"the plug-in {dist.name} {dist.version}" if dist is not None else "a plug-in"
    return f"{package} declares it (entry point {entry.name} = {entry.value} in group {ENTRY_POINT_GROUP})"


class _Unloadable(Exception):
    """Why an entry point gave no spec (its module failed to import, its object is none), with the fix."""

    def __init__(self, message: str, cause: Exception) -> None:
        super().__init__(message)
        self.cause = cause


def _specs_of(entry: metadata.EntryPoint) -> list[PipelineSpec]:
    """The specs an entry point names: one spec, or a mapping of them; else ``_Unloadable``.

    Why the reason is kept: a plug-in whose module failed to import was reported, when a file named its
    pipeline, only as an unknown name whose advice (install the package) did not apply: it was installed.
    """
    try:
        value = entry.load()
    except Exception as exc:
        raise _Unloadable(
            f"its module failed to import ({type(exc).__name__}: {exc}); fix the plug-in "
            f"(`python -c 'import {entry.module}'` shows the error), then run again",
            exc,
        ) from exc
    if isinstance(value, PipelineSpec):
        return [value]
    if isinstance(value, Mapping) and all(isinstance(v, PipelineSpec) for v in value.values()):
        return list(value.values())
    problem = f"expected a PipelineSpec or a mapping of them, got {type(value).__name__}"
    raise _Unloadable(f"{problem}; point the entry point at one", TypeError(problem))


def get_pipeline(
    name: Any,
    pipelines: Mapping[str, PipelineSpec],
    source: str | None = None,
    overrides: Sequence[str] = (),
    origin: str = "set on the command line",
    recorded: bool = False,
) -> PipelineSpec:
    """The spec registered under ``name``, or one ConfigError: the valid names, or why the named one cannot run.

    Why the check here too: a caller's own mapping (tests, embedding) is not loaded through the
    entry points, and its spec's config model must serve as well. ``overrides``: the command line's
    ``key=value`` overrides; one that set ``pipeline`` is named, as every other override's problem
    names it (``origin``: where they came from, the command line or the Python API's ``overrides``),
    and the fix is in it, not at the top of the file (`relay validate FILE pipeline=cres`).
    ``recorded``: the name comes from a run's saved record, made where the pipeline was installed;
    the fix is to install it here, not to edit the record.
    """
    setting = _pipeline_override(overrides)
    where = f" ({origin}: {setting})" if setting else ""
    rejected = getattr(pipelines, "rejected", {})
    if isinstance(name, str) and name in rejected:
        raise ConfigError([f"pipeline: {name!r}: {rejected[name]}{where}"], source)
    unloadable = getattr(pipelines, "unloadable", {})
    if isinstance(name, str) and name not in pipelines and name in unloadable:
        raise ConfigError([f"pipeline: {name!r}: {unloadable[name]}{where}"], source)
    problem = (
        config_model_problem(pipelines[name].config_model) if isinstance(name, str) and name in pipelines else None
    )
    if problem:
        raise ConfigError([f"pipeline: {name!r} cannot run: {problem}{where}"], source)
    if not isinstance(name, str) or name not in pipelines:
        got = "nothing" if name is None else repr(name)
        if recorded and isinstance(name, str):
            raise ConfigError(
                [
                    f"pipeline: the run was made by pipeline {name!r}, which no package installed here declares "
                    f"(installed: {', '.join(sorted(pipelines)) or 'none'}); install the package that provides it "
                    "(its `relay.pipelines` entry point) where this command runs, then run it again"
                ],
                source,
            )
        valid = ", ".join(sorted(pipelines)) or "none (is Relay installed? `pip install -e .` declares them)"
        fix = "give one of them in that override" if setting else "set `pipeline:` at the top of the file"
        plugin = PLUGIN_HINT + _unloadable_note(unloadable) if isinstance(name, str) else ""
        raise ConfigError([f"pipeline: expected one of {valid}{plugin}, got {got}; {fix}{where}"], source)
    return pipelines[name]


# Why: a plug-in that is not installed read as a typo of Relay's names. Only an installed distribution
# (its .dist-info) declares an entry point: PYTHONPATH makes a package's modules importable, not its pipelines.
PLUGIN_HINT = (
    " (a plug-in's pipeline is among them only where its package is installed, declaring it in entry point "
    f"group {ENTRY_POINT_GROUP}: `pip install` the package, or `pip install -e` its folder; a folder on "
    "PYTHONPATH alone makes its modules importable, not its entry point. On a cluster, install it in the "
    "image or the nodes' environment; `relay submit` ships the current folder's code, not its entry point)"
)


def _unloadable_note(unloadable: Mapping[str, str]) -> str:
    """The entry points that failed to load (each warned of, with why): one of them may declare the pipeline."""
    if not unloadable:
        return ""
    names = ", ".join(sorted(unloadable))
    return (
        f" (entry point {names} of group {ENTRY_POINT_GROUP} failed to load, and may declare it: its warning says why)"
    )


def _pipeline_override(overrides: Sequence[str]) -> str | None:
    """The last command-line override that set ``pipeline`` (``pipeline=cres``), or None."""
    setting = [item for item in overrides if item.partition("=")[0].strip() == "pipeline"]
    return setting[-1] if setting else None


def data_specs(pipelines: Mapping[str, PipelineSpec]) -> list[DataSpec]:
    """The distinct DataSpecs the pipelines carry, in pipeline-name order (one per package, usually)."""
    found: list[DataSpec] = []
    for name in sorted(pipelines):
        spec = pipelines[name].data
        if spec is not None and all(spec is not known for known in found):
            found.append(spec)
    return found
