"""Configuration: YAML -> dict -> dotted overrides -> validated, frozen model.

Reading YAML and applying overrides live in ``orchestrator.yaml_input`` (re-exported here, the
config API); this module owns the typed sections and their validation. Validation collects
every problem into one ConfigError so a user fixes a config in one pass instead of one error per run.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.errors import ConfigError
from orchestrator.yaml_input import apply_overrides as apply_overrides
from orchestrator.yaml_input import current_directory as current_directory
from orchestrator.yaml_input import load_yaml as load_yaml
from orchestrator.yaml_input import parse_yaml as parse_yaml
from orchestrator.yaml_input import whole_list_fix

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_WORKSPACE = "./relay-workspace"
WORKSPACE_ENV = "RELAY_WORKSPACE"
ARTIFACT_URI_ENV = "RELAY_ARTIFACT_URI"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

# Names pydantic inserts into an error location for the member of a union it
# tried; they are not config keys, so they are dropped from dotted keys.
_UNION_TAGS = frozenset({"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "none"})


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


def _safe_name(value: str) -> str:
    problem = name_problem(value, "name")
    if problem:
        raise ValueError(problem)
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values frozen, numbers finite and not booleans.

    Forbidding extras turns a typo (``stepz``) into an error instead of a
    silently ignored setting; freezing lets a config be shared safely. YAML reads
    ``yes``/``no``/``on``/``off`` as booleans, and pydantic would take True as the
    number 1 (``train.steps: yes`` -> 1 step), so a boolean is refused wherever the
    field does not ask for one; ``.inf`` and ``nan`` are refused in every float.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _holds_bool(value) and _numbers_only(field.annotation):
            raise ValueError(
                f"expected a number, got {value!r} (YAML reads yes/no/on/off/true/false as booleans); "
                "write the number itself"
            )
        return value


def _holds_bool(value: Any) -> bool:
    """A boolean, or a list/tuple with one (``randint: [yes, 3]``)."""
    if isinstance(value, list | tuple):
        return any(isinstance(item, bool) for item in value)
    return isinstance(value, bool)


def _numbers_only(annotation: Any) -> bool:
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


def _experiment_name(value: str) -> str:
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


class TrackingSettings(StrictModel):
    """Where MLflow records runs and what it records; ``strict`` turns tracking failures into errors.

    ``log_models`` logs every model output (the stored checkpoint: state dict
    + config) and registers it; the aliases ``gen-NN`` and ``newest`` are set when the run finishes.
    ``export_models`` (torch.export, 6-12 s a model, needs an input example)
    is not supported yet and must stay false. ``system_metrics`` samples CPU,
    memory, disk, network (and GPU) of the driver's machine into each stage
    run every ``system_metrics_interval_s`` seconds while the stage runs.
    """

    uri: str | None = None
    experiment: Annotated[str, AfterValidator(_experiment_name)] = "relay"
    strict: bool = False
    log_models: bool = True
    export_models: Literal[False] = False
    system_metrics: bool = True
    system_metrics_interval_s: float = Field(2.0, gt=0.0)


# The words ray.init takes instead of an address: find the machine's running cluster, or start one.
RAY_ADDRESS_WORDS = ("auto", "local")


def ray_address_problem(address: str, key: str) -> str | None:
    """Why ``address`` is not a Ray cluster address a driver can join, or None: HOST:PORT (ray:// allowed).

    Checked for form only (``orchestrator.cli.run_locations`` checks that something answers):
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


def _ray_address(value: str | None) -> str | None:
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


def _object_store_size(value: int | None) -> int | None:
    if value is not None and value < OBJECT_STORE_MINIMUM_BYTES:
        raise ValueError(
            f"{value} bytes is below the smallest object store Ray starts ({OBJECT_STORE_MINIMUM_BYTES} bytes, "
            "75MiB); give at least 75MiB, e.g. 1GB, or null for Ray's default"
        )
    return value


class RunSettings(StrictModel):
    """Where and how a pipeline runs (executor, workspace, storage, cluster).

    ``num_cpus`` and ``object_store_memory`` size the local Ray instance Relay starts; a cluster's
    nodes were sized when they started (`ray start --object-store-memory`), and ray.init refuses an
    object store size when it joins one, so that key is refused beside ``ray_address`` (checked
    here, before anything is written, instead of as Ray's error once the run's record exists).
    """

    executor: Literal["ray", "local"] = "ray"
    workspace: str | None = None
    artifact_uri: str | None = None
    ray_address: Annotated[str | None, AfterValidator(_ray_address)] = None
    num_cpus: int | None = Field(default=None, ge=1, le=4096)
    object_store_memory: Annotated[int | None, BeforeValidator(size_in_bytes), AfterValidator(_object_store_size)] = (
        None
    )

    @model_validator(mode="after")
    def _object_store_only_for_a_local_instance(self) -> RunSettings:
        if self.object_store_memory is not None and self.ray_address not in (None, "local"):
            raise ValueError(
                f"run.object_store_memory: sizes the object store of the local Ray instance Relay starts, but "
                f"run.ray_address={self.ray_address} joins a cluster, whose nodes set their own "
                "(`ray start --object-store-memory`); remove one of the two keys"
            )
        return self


MODEL_SOURCE_FORMS = (
    "a checkpoint file (path/to/weights.pt), models:/NAME@ALIAS, models:/NAME/VERSION or run:RUN_ID/STAGE"
)


@dataclass(frozen=True)
class ModelSource:
    """Where pretrained weights come from, as a config names them (resolved by ``orchestrator.sources``).

    ``kind`` "file": ``name`` is a path (local or a pyarrow URI such as s3://...); "registry": ``name``
    is an MLflow registered model and ``version`` an alias (``@gen-02``) or a version number;
    "run": ``name`` is a Relay run id and ``version`` the stage whose model output to take.
    """

    kind: Literal["file", "registry", "run"]
    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSource:
        """The source a string names; ValueError saying which forms exist otherwise."""
        text = text.strip()
        if text.startswith("models:/"):
            rest = text.removeprefix("models:/")
            name, at, alias = rest.partition("@")
            if not at:
                name, _, alias = rest.partition("/")
            if name and alias and "/" not in alias:
                return cls("registry", name, alias)
        elif text.startswith("run:"):
            run_id, _, stage = text.removeprefix("run:").partition("/")
            if run_id and stage:
                return cls("run", run_id, stage)
        elif (text and ":" not in text.split("/", 1)[0]) or "://" in text:
            return cls("file", text)
        raise ValueError(f"expected {MODEL_SOURCE_FORMS}, got {text!r}")

    def __str__(self) -> str:
        if self.kind == "registry":
            separator = "/" if self.version and self.version.isdigit() else "@"
            return f"models:/{self.name}{separator}{self.version}"
        return f"run:{self.name}/{self.version}" if self.kind == "run" else self.name


def _model_source_text(value: str) -> str:
    ModelSource.parse(value)
    return value


ModelSourceText = Annotated[str, AfterValidator(_model_source_text)]
"""A config field naming pretrained weights: checked for form when the file is loaded, resolved when the DAG is built."""


DOMAIN_KINDS = ("choice", "grid", "randint", "uniform", "loguniform")


class SearchDomain(StrictModel):
    """One dimension of a Tune search space: exactly one of the five kinds.

    ``randint: [1, 3]`` draws 1, 2 or 3 (both ends inclusive, unlike
    ``ray.tune.randint``), because "N from 1 to 3" is how people write ranges.
    Bounds are checked here so a bad range fails before any trial starts.
    """

    choice: list[Any] | None = None
    grid: list[Any] | None = None
    randint: tuple[int, int] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _one_well_formed_kind(self) -> SearchDomain:
        given = [kind for kind in DOMAIN_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one of {', '.join(DOMAIN_KINDS)}, got {given or 'none'}; "
                "write e.g. `{randint: [1, 3]}` or `{choice: [linear, cosine]}`"
            )
        kind, args = given[0], getattr(self, given[0])
        if kind in ("choice", "grid") and not args:
            raise ValueError(f"{kind} is empty; list at least one value")
        if kind in ("randint", "uniform", "loguniform") and args[0] > args[1]:
            raise ValueError(f"{kind} low {args[0]} > high {args[1]}; write [low, high]")
        if kind == "loguniform" and args[0] <= 0:
            raise ValueError(f"loguniform needs low > 0 (got {args[0]}); use uniform for ranges that include 0")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in DOMAIN_KINDS if getattr(self, kind) is not None)

    @property
    def args(self) -> Any:
        return getattr(self, self.kind)


class TuneSettings(StrictModel):
    """The `tune:` section: what `relay tune` searches and how it stops trials.

    ``space`` maps dotted config keys (the same keys as CLI overrides) to
    domains. ``metric`` is `<stage role>/<metric>` as the tracker names it
    (e.g. `evaluate/balanced_accuracy`); trials report it after every
    generation, so ``grace_period`` and ``perturbation_interval`` count
    generations. ``asha`` stops trials asynchronously (best with many trials
    at once); ``sha`` pauses every trial at each rung until all have reached
    it, then keeps the best 1/reduction_factor (best when trials run a few at
    a time: see orchestrator/tune/schedulers.py). ``max_concurrent_trials`` null means "as many as the cluster
    fits". ``trial_cpus`` is what a trial's driver holds: its stages are Ray
    tasks that ask for the stage resources themselves.
    """

    name: SafeName | None = None
    metric: str
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(4, ge=1, le=100_000)
    scheduler: Literal["asha", "sha", "pbt", "pb2", "none"] = "asha"
    search: Literal["random", "optuna"] = "random"
    max_concurrent_trials: int | None = Field(None, ge=1)
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)
    perturbation_interval: int = Field(1, ge=1)
    seed: int | None = Field(None, ge=0, lt=2**32)  # Ray Tune's generators take 32-bit seeds
    trial_cpus: float = Field(0.1, gt=0.0)
    space: dict[str, SearchDomain]

    @field_validator("metric")
    @classmethod
    def _metric_names_a_stage_role(cls, value: str) -> str:
        role, _, name = value.partition("/")
        if not role or not name:
            raise ValueError(
                f"expected `<stage role>/<metric>` as the tracker names it, e.g. "
                f"evaluate/balanced_accuracy; got {value!r}"
            )
        return value

    @field_validator("space", mode="before")
    @classmethod
    def _entries_are_domains(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, Mapping):
            model = (info.context or {}).get(CONFIG_MODEL)  # the pipeline's config model, from ``validate_config``
            problems = [_not_a_domain(str(key), got) for key, got in value.items() if not isinstance(got, Mapping)]
            problems += [
                _unknown_domain(str(key), got, model) or _nested_entry(str(key), got)
                for key, got in value.items()
                if _is_section(got)
            ]
            if problems:
                raise ValueError("; ".join(problems))
        return value

    @field_validator("space")
    @classmethod
    def _space_not_empty(cls, value: dict[str, SearchDomain]) -> dict[str, SearchDomain]:
        if not value:
            raise ValueError(
                "the search space is empty, so there is nothing to tune; add at least one dotted key with a "
                "domain, e.g. `train.lr: {loguniform: [0.01, 0.1]}`, or run the file with `relay run`"
            )
        return value

    @field_validator("space")
    @classmethod
    def _no_entry_inside_another(cls, value: dict[str, SearchDomain]) -> dict[str, SearchDomain]:
        """Refuse an entry for a section beside entries for keys inside it (`augment.strong` and
        `augment.strong.num_ops`): a trial's values are overrides, and overrides that overlap are refused."""
        nested = [(outer, inner) for outer in value for inner in value if inner.startswith(f"{outer}.")]
        if nested:
            pairs = "; ".join(f"{outer!r} holds {inner!r}" for outer, inner in nested)
            raise ValueError(
                f"entries overlap ({pairs}), so a trial would set one key twice; keep one of each pair: the section's "
                "entry, or the entries of the keys inside it"
            )
        return value

    @model_validator(mode="after")
    def _compatible_choices(self) -> TuneSettings:
        kinds = {key: domain.kind for key, domain in self.space.items()}
        if self.search == "optuna" and "grid" in kinds.values():
            raise ValueError("search optuna cannot run grid dimensions; use choice instead of grid, or search random")
        if self.scheduler in ("pbt", "pb2") and self.search != "random":
            raise ValueError(f"scheduler {self.scheduler} chooses values itself; use search random with it")
        if self.scheduler == "sha" and self.search != "random":
            raise ValueError(
                "scheduler sha pauses trials at each rung, which Optuna would count as finished; "
                "use search random with it (or scheduler asha with optuna)"
            )
        discrete = sorted(key for key, kind in kinds.items() if kind in ("choice", "grid"))
        if self.scheduler == "pb2" and discrete:
            raise ValueError(f"scheduler pb2 needs numeric ranges (randint, uniform, loguniform); {discrete} are lists")
        return self


class PipelineConfig(StrictModel):
    """The fields every pipeline's config model provides, because Relay itself reads them from every file.

    ``pipeline`` picks the pipeline, ``name`` names its runs and ``seed`` seeds its stages; ``run``
    (executor, workspace, stores, Ray address), ``tracking`` (MLflow) and ``tune`` (`relay tune`'s
    search) are read by the CLI before the pipeline's own sections mean anything. A pipeline's
    config model derives from it and adds its own sections (a `PipelineSpec`'s ``config_model``);
    ``orchestrator.registry.config_model_problem`` says what a model that does not provide them lacks.
    """

    pipeline: str
    name: SafeName
    seed: int = Field(0, ge=0, lt=2**31)  # numpy and torch seed generators take it and small offsets of it
    run: RunSettings = RunSettings()
    tracking: TrackingSettings = TrackingSettings()
    tune: TuneSettings | None = None


def _not_a_domain(key: str, got: Any) -> str:
    """A space entry that is a value, not a domain, and how to write it (`tune.space.train.lr.loguniform=[1, 2]`).

    A command-line ``tune.space.KEY=...`` sets the entry KEY whole: its value is the domain.
    """
    base, _, kind = key.rpartition(".")
    if base and kind in DOMAIN_KINDS:
        shown = yaml.safe_dump(got, default_flow_style=True).strip().removesuffix("...").strip()
        return (
            f"entry {key!r} names a domain kind after the key; write the key with its domain: `{base}: {{{kind}: "
            f"{shown}}}` (on the command line: tune.space.{base}='{{{kind}: {shown}}}')"
        )
    return (
        f"entry {key!r} must be a domain, one of {', '.join(DOMAIN_KINDS)} (got {got!r:.60}); write e.g. "
        f"`{key}: {{choice: [...]}}` (on the command line: tune.space.{key}='{{loguniform: [0.01, 0.1]}}')"
    )


def _is_section(entry: Any) -> bool:
    """Whether a space entry is a nested section (`augment: {strong: {...}}`), not a domain: no key of it is a kind."""
    return isinstance(entry, Mapping) and bool(entry) and not any(str(key) in DOMAIN_KINDS for key in entry)


def _unknown_domain(key: str, entry: Mapping[str, Any], model: type[BaseModel] | None) -> str | None:
    """An entry that reads as a domain whose kind is misspelled (`train.lr: {unifrom: [0.01, 0.1]}`), named so; None
    for one that reads as a nested config section (``_nested_entry``).

    It is a misspelled kind when its one key holds a list, as a domain's arguments, and ``KEY.NAME`` is no key of
    the config model. Why: it was called "nested like a config section" with the advice `train.lr.unifrom:
    [0.01, 0.1]`, which was then refused as no domain. Where the model is not known (a `tune:` section validated
    alone), only a name close to a kind is taken for one.
    """
    if len(entry) != 1:
        return None
    [(name, args)] = entry.items()
    if not isinstance(args, list):
        return None
    close = difflib.get_close_matches(str(name), DOMAIN_KINDS, n=1, cutoff=0.7)
    if (model is None and not close) or (model is not None and _config_key(model, f"{key}.{name}")):
        return None
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown domain {str(name)!r} for {key}{hint}; domains: {', '.join(DOMAIN_KINDS)}"


def _config_key(model: type[BaseModel], key: str) -> bool:
    """Whether dotted ``key`` names a setting of ``model`` (a key inside a section whose keys are free counts)."""
    annotation: Any = model
    for part in key.split("."):
        section = _submodel(annotation)
        if section is None:
            return _free_keys(annotation)
        if part not in section.model_fields:
            return False
        annotation = section.model_fields[part].annotation
    return True


def _free_keys(annotation: Any) -> bool:
    """Whether a setting of type ``annotation`` takes keys of any name (a mapping, or anything)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation) or annotation
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return True
    return any(_free_keys(arg) for arg in typing.get_args(annotation))


def _nested_entry(key: str, section: Mapping[str, Any]) -> str:
    """A space entry nested as the config's sections are, and the dotted keys to write instead.

    Why: `space: {augment: {strong: {num_ops: {randint: [1, 3]}}}}` was refused as
    `tune.space.augment.strong: unknown key; valid keys: choice, grid, ...`, which named the domain
    kinds but not that a space's keys are dotted config keys, one entry per key.
    """
    shown = "; ".join(
        f"{dotted_key}: {yaml.safe_dump(domain, default_flow_style=True).strip().removesuffix('...').strip()}"
        for dotted_key, domain in _dotted_entries(key, section).items()
    )
    return (
        f"entry {key!r} is nested like a config section, but a space's keys are dotted config keys (as on the "
        f"command line), each with its domain; write `{shown}`"
    )


def _dotted_entries(prefix: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """A nested space entry as dotted keys, down to each domain (a mapping naming a kind) or value."""
    flat: dict[str, Any] = {}
    for key, value in section.items():
        if _is_section(value):
            flat.update(_dotted_entries(f"{prefix}.{key}", value))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def dotted(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.steps": 10, ...}``; a list or an empty mapping is one value."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(dotted(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def resolve_workspace(settings: RunSettings) -> Path:
    """The workspace directory: the setting, else $RELAY_WORKSPACE, else ./relay-workspace.

    Returned absolute, because Ray workers and MLflow may run from another cwd.
    """
    return Path(workspace_setting(settings)).expanduser().resolve()


def workspace_setting(settings: RunSettings) -> str:
    """The workspace as the user gave it (setting, variable or default), before it is made absolute."""
    return settings.workspace or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE


def tracking_uri(settings: RunSettings, tracking: TrackingSettings) -> str:
    """The MLflow tracking URI: ``tracking.uri``, else $MLFLOW_TRACKING_URI, else a sqlite file in the workspace.

    The environment variable is MLflow's own, so a shell set up for a tracking server
    (and a Ray job, which `relay submit` hands it to) needs nothing in the config.
    """
    if tracking.uri:
        return tracking.uri
    if os.environ.get(TRACKING_URI_ENV):
        return os.environ[TRACKING_URI_ENV]
    return f"sqlite:///{resolve_workspace(settings) / 'mlflow.db'}"


def artifact_uri(settings: RunSettings) -> str:
    """The artifact store root: ``run.artifact_uri``, else $RELAY_ARTIFACT_URI, else <workspace>/artifacts.

    Run records (config, command, ledger) live under it too (``runs/RUN_ID/``), so every
    machine that sees the store can read, resume and browse a run.
    """
    if settings.artifact_uri:
        return settings.artifact_uri
    if os.environ.get(ARTIFACT_URI_ENV):
        return os.environ[ARTIFACT_URI_ENV]
    return str(resolve_workspace(settings) / "artifacts")


CONFIG_MODEL = "config_model"  # validation context: the whole file's model, which `tune.space` keys name settings of


def validate_config(model_cls: type[ModelT], data: Any, source: str | None = None) -> ModelT:
    """Validate ``data`` into ``model_cls``, reporting every problem at once."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level must be a mapping (got {type(data).__name__})"], source)
    try:
        return model_cls.model_validate(dict(data), context={CONFIG_MODEL: model_cls})
    except ValidationError as exc:
        problems = _merge(item for err in exc.errors(include_url=False) for item in _descriptions(model_cls, err))
        raise ConfigError(problems, source) from exc


def _merge(items: typing.Iterable[tuple[str, str]]) -> list[str]:
    """Join problems for one key (pydantic reports each union member apart)."""
    by_key: dict[str, list[str]] = {}
    for key, what in items:
        whats = by_key.setdefault(key, [])
        if what not in whats:
            whats.append(what)
    return [f"{key}: {' or '.join(whats)}" if key else " or ".join(whats) for key, whats in by_key.items()]


class CheckProblems(ValueError):
    """The problems one validator found, each headed by its own key (`fitnets.hint_layer: ...`): listed apart.

    Why: a validator raises one error, and two findings joined in it read as one line pinned on one key and
    its override, though each has its own key and fix.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _descriptions(model_cls: type[BaseModel], err: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One pydantic error as (dotted key, 'what; fix') pairs: one per problem of a ``CheckProblems``."""
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, CheckProblems) and err["type"] in _OWN_WORDS:
        return [_keyed(*_describe(model_cls, {**err, "msg": problem})) for problem in error.problems]
    return [_describe(model_cls, err)]


def _keyed(key: str, message: str) -> tuple[str, str]:
    """(key, message) with a check across sections' message (no key of its own) keyed by the key heading it,
    so that ``_merge`` keeps two such problems apart."""
    head, colon, rest = message.partition(": ")
    return (head, rest) if not key and colon and " " not in head else (key, message)


def _describe(model_cls: type[BaseModel], err: Mapping[str, Any]) -> tuple[str, str]:
    """One pydantic error as (dotted key, 'what; fix')."""
    loc = [p for p in err["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p))]
    key = _dotted(loc) or "<top level>"
    kind = err["type"]
    if not loc and kind in _OWN_WORDS:  # a check across sections: its message names the keys it compared
        return "", _expectation(err)
    if kind == "extra_forbidden" and loc and isinstance(loc[-1], str) and "." in loc[-1]:
        return _dotted_file_key(loc, err.get("input"))
    if kind == "extra_forbidden":
        return key, _unknown_key(model_cls, loc)
    if kind == "missing":
        return key, "required key is missing; add it"
    if kind in _OWN_WORDS:  # our validators' messages already say what was expected, what came and the fix
        return _own_key(key, _expectation(err))
    got = err.get("input")
    if kind == "model_type":  # pydantic: "a valid dictionary or instance of TrainSection"
        return (
            key,
            f"must be a section of `key: value` settings (got {got!r:.80} of type {type(got).__name__}); write {key}: with its keys below it",
        )
    if isinstance(got, Mapping):  # a whole section where one value goes: echoing it buries the message
        return key, _section_where_value_goes(key, err, got)
    if kind == "string_type" and got is None:  # `key=` or `key:` with nothing after it: YAML reads null
        return (
            key,
            f"must be text, got nothing (YAML reads an empty value as null); give a value: {key}: NAME in a "
            f"file, {key}=NAME on the command line",
        )
    if kind == "string_type" and isinstance(got, (bool, int, float)):  # YAML read text as a number
        return (
            key,
            f"must be text, but YAML reads the value as {'a yes/no' if isinstance(got, bool) else 'a number'} "
            f"({got!r}); put it in quotes "
            f"as you wrote it: {key}: '...' in a file, \"{key}='...'\" on the command line",
        )
    return key, f"{_expectation(err)} (got {got!r} of type {type(got).__name__}); fix the value"


_LIST_TYPES = frozenset({"list_type", "tuple_type", "set_type", "frozen_set_type"})


def _section_where_value_goes(key: str, err: Mapping[str, Any], got: Mapping[Any, Any]) -> str:
    """What to write instead of the section ``got`` given where one value goes.

    A list given items by number as text keys (`data.classes.0=3` on the command line makes the section
    {'0': 3}; a file's `0:` is the number 0) was told to "write one value": it gets the advice of the
    `data.classes[0]=3` form, the whole list (``whole_list_fix``).
    """
    if err["type"] in _LIST_TYPES and got and all(isinstance(item, str) and item.isdigit() for item in got):
        return whole_list_fix(key)
    return f"{_expectation(err)}, not a section of settings (got keys {', '.join(map(str, got))[:80]}); write one value"


def _dotted_file_key(loc: Sequence[Any], value: Any) -> tuple[str, str]:
    """(the key quoted as the file wrote it, how to nest it) for a file's key with dots (`train.steps: 3`).

    Why: YAML reads `train.steps` in a file as one name, not `steps` inside `train` as the command line does;
    the problem said "unknown key" under `train.steps`, which read as the valid key an override of it set.
    Quoted, it is the file's literal key, and the fix is to nest it.
    """
    *above, dotted = loc
    *sections, last = dotted.split(".")
    shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    lines = [f"{'  ' * depth}{part}:" for depth, part in enumerate(sections)] + [
        f"{'  ' * len(sections)}{last}: {shown}"
    ]
    section = _dotted(above)
    where = f" inside {section}" if section else ""
    return (
        f"{section}.{dotted!r}" if section else repr(dotted),
        f"unknown key: in a YAML file a key with dots is one name, not a key inside a section (only the command "
        f"line reads it as nested); write it{where} as" + "".join(f"\n      {line}" for line in lines),
    )


def _own_key(key: str, message: str) -> tuple[str, str]:
    """(key, message) of a problem found in section ``key`` whose message may already be headed by its own key.

    A message headed by a key at or below ``key`` (`train.unlabeled_ratio: ...` from a check of the whole
    train section) is that key's problem, named once. Why: the section's key was put before it, and the user
    read `train: train.unlabeled_ratio: ...`; an override is matched to a problem by its key, too.
    """
    head, colon, rest = message.partition(": ")
    if colon and " " not in head and (head == key or head.startswith((f"{key}.", f"{key}["))):
        return head, rest
    return key, message


def _dotted(loc: Sequence[Any]) -> str:
    """('train', 'lrs', 0) -> 'train.lrs[0]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_OWN_WORDS = frozenset({"value_error", "assertion_error"})
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _expectation(err: Mapping[str, Any]) -> str:
    """Rephrase pydantic's message as what the value must be."""
    ctx = err.get("ctx") or {}
    for kind, symbol in _BOUNDS.items():
        if err["type"] == kind:
            bound = next(iter(ctx.values()), "?")
            return f"must be {symbol} {bound}"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg.replace("Input should be", "must be", 1)


def _unknown_key(model_cls: type[BaseModel], loc: Sequence[Any]) -> str:
    """Name the valid keys (and the closest one) where an unknown key was found."""
    model = _model_at(model_cls, loc[:-1])
    if model is None:
        return "unknown key; remove it"
    valid = sorted(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.7)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; valid keys: {', '.join(valid)}"


def _model_at(model_cls: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """Walk field annotations along ``loc`` to the model that owns the last key."""
    model: type[BaseModel] | None = model_cls
    for part in loc:
        if model is None:
            return None
        if isinstance(part, str) and part in model.model_fields:
            model = _submodel(model.model_fields[part].annotation)
        # list indexes and dict keys keep the element model found by _submodel
    return model


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation (Model, Model | None, list[Model], ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None
