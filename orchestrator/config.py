"""Configuration: YAML -> dict -> dotted overrides -> validated, frozen model.

The CLI and Ray Tune share ``apply_overrides`` so a key means the same thing
everywhere. Validation collects every problem into one ConfigError so a user
fixes a config in one pass instead of one error per run.
"""

from __future__ import annotations

import copy
import difflib
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_WORKSPACE = "./relay-workspace"
WORKSPACE_ENV = "RELAY_WORKSPACE"

# Names pydantic inserts into an error location for the member of a union it
# tried; they are not config keys, so they are dropped from dotted keys.
_UNION_TAGS = frozenset({"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "none"})


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values frozen.

    Forbidding extras turns a typo (``stepz``) into an error instead of a
    silently ignored setting; freezing lets a config be shared safely.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackingSettings(StrictModel):
    """Where MLflow records runs and what it records; ``strict`` turns tracking failures into errors.

    ``log_models`` logs every model output (the stored checkpoint: state dict
    + config) and registers it with aliases ``gen-NN`` and ``newest``.
    ``export_models`` (torch.export, 6-12 s a model, needs an input example)
    is not supported yet and must stay false. ``system_metrics`` samples CPU,
    memory, disk, network (and GPU) of the driver's machine into each stage
    run every ``system_metrics_interval_s`` seconds while the stage runs.
    """

    uri: str | None = None
    experiment: str = "relay"
    strict: bool = False
    log_models: bool = True
    export_models: Literal[False] = False
    system_metrics: bool = True
    system_metrics_interval_s: float = Field(2.0, gt=0.0)


class RunSettings(StrictModel):
    """Where and how a pipeline runs (executor, workspace, storage, cluster)."""

    executor: Literal["ray", "local"] = "ray"
    workspace: str | None = None
    artifact_uri: str | None = None
    ray_address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)


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

    name: str | None = None
    metric: str
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(4, ge=1)
    scheduler: Literal["asha", "sha", "pbt", "pb2", "none"] = "asha"
    search: Literal["random", "optuna"] = "random"
    max_concurrent_trials: int | None = Field(None, ge=1)
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)
    perturbation_interval: int = Field(1, ge=1)
    seed: int | None = None
    trial_cpus: float = Field(0.1, gt=0.0)
    space: dict[str, SearchDomain] = Field(min_length=1)

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


def resolve_workspace(settings: RunSettings) -> Path:
    """The workspace directory: the setting, else $RELAY_WORKSPACE, else ./relay-workspace.

    Returned absolute, because Ray workers and MLflow may run from another cwd.
    """
    raw = settings.workspace or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
    return Path(raw).expanduser().resolve()


def tracking_uri(settings: RunSettings, tracking: TrackingSettings) -> str:
    """The MLflow tracking URI; defaults to a sqlite file inside the workspace."""
    if tracking.uri:
        return tracking.uri
    return f"sqlite:///{resolve_workspace(settings) / 'mlflow.db'}"


def artifact_uri(settings: RunSettings) -> str:
    """The artifact store root; defaults to <workspace>/artifacts."""
    if settings.artifact_uri:
        return settings.artifact_uri
    return str(resolve_workspace(settings) / "artifacts")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a ConfigError that says where."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"file not found: {path}; check the path or run from the repository root"], source) from exc
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc}; check its permissions"], source) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], source) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"top level must be a mapping of sections (got {type(data).__name__}); write `key: value` lines"], source
        )
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Describe a YAML syntax error with its 1-based line and column."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"malformed YAML: {what}; fix the syntax"
    return f"malformed YAML at line {mark.line + 1}, column {mark.column + 1}: {what}; fix the syntax there"


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied.

    ``overrides`` is either CLI-style strings ``"a.b.c=3"`` (values parsed with
    yaml.safe_load, so ``3`` is an int and ``[1, 2]`` a list) or a mapping of
    dotted keys to already-typed values (what Ray Tune samples). Missing
    intermediate sections are created. Every malformed override is reported
    in one ConfigError.
    """
    result = copy.deepcopy(dict(data))
    problems = []
    for key, value, problem in _parse_overrides(overrides):
        problem = problem or _set_dotted(result, key, value)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(problems, "overrides")
    return result


def _parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> list[tuple[str, Any, str | None]]:
    """(dotted key, value, problem or None) per override, in the order given."""
    if isinstance(overrides, Mapping):
        return [(str(k), v, None) for k, v in overrides.items()]
    if isinstance(overrides, str):
        overrides = [overrides]
    parsed: list[tuple[str, Any, str | None]] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            parsed.append(
                (key, None, f"{item!r}: expected key=value (e.g. train.steps=100); got no '=' or an empty key")
            )
            continue
        try:
            parsed.append((key, yaml.safe_load(raw), None))
        except yaml.YAMLError as exc:
            parsed.append((key, None, f"{key}: value {raw!r} is not valid YAML ({_yaml_problem(exc)}); quote it"))
    return parsed


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> str | None:
    """Set ``a.b.c`` in nested dicts, creating sections; return a problem or None."""
    parts = key.split(".")
    if any(not p for p in parts):
        return f"{key}: empty segment in dotted key; write keys like section.name"
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            return (
                f"{key}: cannot set inside {prefix!r}, which is a {type(child).__name__} "
                f"(got {child!r}), not a section; override {prefix} itself"
            )
        node = child
    node[parts[-1]] = value
    return None


def validate_config(model_cls: type[ModelT], data: Any, source: str | None = None) -> ModelT:
    """Validate ``data`` into ``model_cls``, reporting every problem at once."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"top level must be a mapping (got {type(data).__name__})"], source)
    try:
        return model_cls.model_validate(dict(data))
    except ValidationError as exc:
        problems = _merge(_describe(model_cls, err) for err in exc.errors(include_url=False))
        raise ConfigError(problems, source) from exc


def _merge(items: typing.Iterable[tuple[str, str]]) -> list[str]:
    """Join problems for one key (pydantic reports each union member apart)."""
    by_key: dict[str, list[str]] = {}
    for key, what in items:
        whats = by_key.setdefault(key, [])
        if what not in whats:
            whats.append(what)
    return [f"{key}: {' or '.join(whats)}" for key, whats in by_key.items()]


def _describe(model_cls: type[BaseModel], err: Mapping[str, Any]) -> tuple[str, str]:
    """One pydantic error as (dotted key, 'what; fix')."""
    loc = [p for p in err["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p))]
    key = _dotted(loc) or "<top level>"
    kind = err["type"]
    if kind == "extra_forbidden":
        return key, _unknown_key(model_cls, loc)
    if kind == "missing":
        return key, "required key is missing; add it"
    got = err.get("input")
    return key, f"{_expectation(err)} (got {got!r} of type {type(got).__name__}); fix the value"


def _dotted(loc: Sequence[Any]) -> str:
    """('train', 'lrs', 0) -> 'train.lrs[0]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
