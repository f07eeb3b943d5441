"""Configuration: YAML -> dict -> dotted overrides -> validated, frozen model.

Reading YAML and applying overrides live in ``orchestrator.yaml_input`` (re-exported here, the
config API); this module owns the typed sections every pipeline's config shares, where a run's
workspace and stores are, and ``validate_config``. Validation collects every problem into one
ConfigError so a user fixes a config in one pass instead of one error per run. The checks of single
values live in ``values``, the wording of each problem in ``problems``, and what is wrong with a
`tune.space` entry that is no domain in ``space_entries``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

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

from orchestrator.config.problems import OWN_WORDS, describe, keyed, merge
from orchestrator.config.space_entries import (
    DOMAIN_KINDS,
    RANGE_EXAMPLES,
    entry_problems,
    overlap_problem,
    range_problem,
)
from orchestrator.config.values import (
    checked_experiment_name,
    checked_object_store_size,
    checked_ray_address,
    holds_bool,
    numbers_only,
    safe_name,
    size_in_bytes,
)
from orchestrator.errors import ConfigError
from orchestrator.yaml_input import apply_overrides as apply_overrides
from orchestrator.yaml_input import current_directory as current_directory
from orchestrator.yaml_input import load_yaml as load_yaml
from orchestrator.yaml_input import parse_yaml as parse_yaml

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_WORKSPACE = "./relay-workspace"
WORKSPACE_ENV = "RELAY_WORKSPACE"
ARTIFACT_URI_ENV = "RELAY_ARTIFACT_URI"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

SafeName = Annotated[str, AfterValidator(safe_name)]


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
        if field is not None and holds_bool(value) and numbers_only(field.annotation):
            raise ValueError(
                f"expected a number, got {value!r} (YAML reads yes/no/on/off/true/false as booleans); "
                "write the number itself"
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
    experiment: Annotated[str, AfterValidator(checked_experiment_name)] = "relay"
    strict: bool = False
    log_models: bool = True
    export_models: Literal[False] = False
    system_metrics: bool = True
    system_metrics_interval_s: float = Field(2.0, gt=0.0)


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
    ray_address: Annotated[str | None, AfterValidator(checked_ray_address)] = None
    num_cpus: int | None = Field(default=None, ge=1, le=4096)
    object_store_memory: Annotated[
        int | None, BeforeValidator(size_in_bytes), AfterValidator(checked_object_store_size)
    ] = None

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

    @model_validator(mode="before")
    @classmethod
    def _ranges_have_two_ends(cls, data: Any) -> Any:
        """A range given as anything but its two ends is refused with the form to write (``range_problem``)."""
        if isinstance(data, Mapping):
            for kind in RANGE_EXAMPLES:
                problem = None if data.get(kind) is None else range_problem(kind, data[kind])
                if problem:
                    raise ValueError(problem)
        return data

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
            problems = entry_problems(value, model)
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
        problem = overlap_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def population_based(self) -> bool:
        """Whether the scheduler evolves a population of running trials (PBT, PB2), changing their values itself."""
        return self.scheduler in ("pbt", "pb2")

    @model_validator(mode="after")
    def _compatible_choices(self) -> TuneSettings:
        kinds = {key: domain.kind for key, domain in self.space.items()}
        if self.search == "optuna" and "grid" in kinds.values():
            raise ValueError("search optuna cannot run grid dimensions; use choice instead of grid, or search random")
        if self.population_based and self.search != "random":
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
        problems = merge(item for err in exc.errors(include_url=False) for item in _descriptions(model_cls, err))
        raise ConfigError(problems, source) from exc


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
    if isinstance(error, CheckProblems) and err["type"] in OWN_WORDS:
        return [keyed(*describe(model_cls, {**err, "msg": problem})) for problem in error.problems]
    return [describe(model_cls, err)]
