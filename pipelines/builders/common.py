"""What the builders share: generation names, the split artifact, the data preflight checks, where training starts.

Builders turn a validated config into a static DAG (`orchestrator.dag.Pipeline`) and import no
torch: they name stage bodies through `pipelines.stages.refs`, whose modules are imported only
where a stage runs. Stages are made with `refs.make_stage`.

Every pipeline file has `init` (pretrained weights), `pretext` (a self-supervised first stage) and
`probe` (linear probes of chosen stages' models); `start_stages`, `starting` and `probe_stages`
turn them into stages and wiring the same way in every builder.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from orchestrator.config import StrictModel
from orchestrator.dag import Pipeline, Stage
from orchestrator.errors import ConfigError, PipelineError
from orchestrator.sources import read_bytes, resolve_source
from pipelines import split
from pipelines.data import IMAGE_SHAPES, image_shape, load_labels
from pipelines.datasets.catalog import SHARDED
from pipelines.datasets.shards import DatasetError, read_manifest
from pipelines.schema import part
from pipelines.stages import refs

SPLIT = "data/split"  # the split table every pipeline starts from (stage and artifact share the name)
BASELINE_PREFIX = "baseline_"  # metrics of a side branch logged in a generation's run
INIT_MODEL = "init/model"  # the imported `init.source` weights
PRETEXT_MODEL = "pretext/model"  # the self-supervised encoder

# `relay generations` columns (header -> `<stage role>/<metric>`) that several pipelines show.
ACCURACY_COLUMNS = {"balanced_accuracy": "evaluate/balanced_accuracy"}
# The pretext encoder's linear probe (`pretext/probe`, outside every generation): the tracker puts its score on
# the pipeline run in generation 0's row, the generation its encoder starts; a run without it drops the column.
PRETEXT_PROBE_COLUMNS = {"pretext probe": "pretext/probe/balanced_accuracy"}
LONG_TAIL_COLUMNS = {
    **ACCURACY_COLUMNS,
    "tail_recall": "evaluate/tail_recall",
    "pseudo_label_accuracy": "pseudo_label/accuracy",
}


def gen(k: int, role: str) -> str:
    """Stage and artifact names of generation k: `g03/train`, `g03/model`."""
    return f"g{k:02d}/{role}"


Section = TypeVar("Section", bound=BaseModel)


def unread_as_default(section: Section, names: Iterable[str]) -> Section:
    """``section`` with the fields ``names`` put back to their defaults: keys a stage does not read under the
    config's other settings.

    Why: a stage's params are its cache key, so a key it ignores still reran it when changed, to
    byte-identical output (`pretext.temperature` retrained a RotNet encoder, `noisy.label_smoothing` a
    soft-label student); the sweep's inert-key warning, which compares fingerprints, missed such keys.
    The defaults rather than a marker: a file that never set the key keeps the fingerprints it had.
    """
    defaults = type(section).model_fields
    return section.model_copy(update={name: defaults[name].default for name in names})


def split_stage(config: Any, name: str = SPLIT, data: Any = None, body: Any = refs.split_supervised) -> Stage:
    """A split stage of ``data`` (default: the file's `data`), artifact ``name``; ``body`` is `split_supervised`, or
    `split_data` where the pipeline needs unlabeled images.

    Unseeded (``Stage.seeded``): the split is drawn from `data` alone (`data.fold` seeds it), never from the run's
    `seed`, so a sweep over `seed` reuses the cached split instead of drawing the same table again in every run.
    """
    params = {"data": config.data if data is None else data}
    stage = refs.make_stage(name, body, {"split": name}, (name,), params, config.resources.data, None)
    return dataclasses.replace(stage, seeded=False)


def train_and_evaluate(
    config: Any,
    role: str,
    k: int,
    data: Any,
    split_name: str,
    params: dict,
    pretrained: str | None = None,
    io_roles: dict[str, str] | None = None,
) -> list[Stage]:
    """`role/train` (train_network; from ``pretrained`` when given, with more ``io_roles`` such as a teacher) and
    `role/evaluate` of one network on the same task's test split, both in generation ``k``."""
    prefix = params.get("metric_prefix", "")
    model, evaluation = f"{role}/model", f"{role}/evaluation"
    io, params = starting({"split": split_name, "model": model, **(io_roles or {})}, params, config, pretrained)
    res = config.resources
    return [
        refs.make_stage(f"{role}/train", refs.train_network, io, (model,), params, res.train, k),
        refs.make_stage(
            f"{role}/evaluate",
            refs.evaluate_network,
            {"split": split_name, "model": model, "evaluation": evaluation},
            (evaluation,),
            {"data": data, "batch_size": config.label.batch_size, "metric_prefix": prefix},
            res.evaluate,
            k,
        ),
    ]


# --- where training starts: init.source, the pretext stage, probes --------------------------


class InitLoad(StrictModel):
    """What a train stage reads of `init` (bounds checked there): how pretrained weights load and train."""

    head: Literal["reset", "keep"]
    freeze_backbone_steps: int
    backbone_lr_scale: float


def start_stages(config: Any, split_artifact: str = SPLIT) -> tuple[list[Stage], str | None]:
    """The stages that make the run's starting weights and the artifact they write (None: random initialisation).

    `init.source` is found here, on the driver (orchestrator.sources), and its location and digest
    become the import stage's params: new weights behind the same name rerun the import and
    everything trained from it. The pretext stage trains `model` on the split's training images.
    """
    res = config.resources
    if config.init.source is not None:
        found = resolve_source(config.init.source, config.run, config.tracking)
        channels = IMAGE_SHAPES.get(config.data.name, (None,))[0]
        params = {
            "source": found.source,
            "location": found.location,
            "digest": found.digest,
            "model": config.model,  # what a plain state dict is taken to be
            "in_channels": channels,
        }
        stage = refs.make_stage(
            "init/import", refs.import_weights, {"model": INIT_MODEL}, (INIT_MODEL,), params, res.data, None
        )
        return [stage], INIT_MODEL
    if config.pretext.method != "none":
        params = {"data": config.data, **pretext_read(config.model, config.pretext, config.augment)}
        io_roles = {"split": split_artifact, "model": PRETEXT_MODEL}
        stage = refs.make_stage(
            "pretext/pretrain", refs.pretrain_pretext, io_roles, (PRETEXT_MODEL,), params, res.train, None
        )
        return [stage], PRETEXT_MODEL
    return [], None


# What the pretext stage does not read of `pretext` and `augment`, by method: `pretext.probe` only adds the probe
# stage; RotNet has no projection head and no NT-Xent temperature, and sees only the weak view (SimCLR only the
# strong one, which starts with the weak one's flip and crop, so it reads all of `augment`). Of `model` it builds
# the network without stochastic depth, whatever `model.stochastic_depth` says (the train stages apply it).
PRETEXT_UNREAD = {"rotnet": ("probe", "temperature", "projection_dim"), "simclr": ("probe",)}
PRETEXT_AUGMENT_UNREAD = {"rotnet": ("strong",), "simclr": ()}


def pretext_read(model: Any, pretext: Any, augment: Any) -> dict:
    """The pretext stage's `model`, `pretext` and `augment` params: what its method reads, the rest at the defaults."""
    return {
        "model": unread_as_default(model, ("stochastic_depth",)),
        "pretext": unread_as_default(pretext, PRETEXT_UNREAD[pretext.method]),
        "augment": unread_as_default(augment, PRETEXT_AUGMENT_UNREAD[pretext.method]),
    }


# `train` keys a supervised train stage reads only under another setting: (setting, the value that reads it).
READ_ONLY_WITH = {"focal_gamma": ("loss", "focal"), "warmup_steps": ("schedule", "warmup_cosine")}
# The labeled loss's `train` keys, which a loop without that loss (LwF's new task, FitNets' hint stage) never reads.
LABELED_LOSS_KEYS = ("label_smoothing", "class_balanced_beta", "loss", "focal_gamma", "cutmix_alpha", "ema_decay")
# The parts of `augment` each `train.augment` input noise leaves unread (the strong view starts with the weak one's).
NOISE_UNREAD = {"none": ("weak", "strong"), "weak": ("strong",), "strong": ()}


def supervised_reads(train: Any, augment: Any, also_unread: Sequence[str] = ()) -> dict:
    """A supervised train stage's `train` and `augment` params: what it reads, the rest (and ``also_unread``) at
    the defaults.

    Why: `train.focal_gamma` with `train.loss=ce`, `train.warmup_steps` with another schedule, or
    `augment.strong` with `train.augment=weak` retrained every network to the same weights.
    """
    unread = [key for key, (setting, value) in READ_ONLY_WITH.items() if getattr(train, setting) != value]
    return {
        "train": unread_as_default(train, [*unread, *also_unread]),
        "augment": unread_as_default(augment, NOISE_UNREAD[train.augment]),
    }


def starting(
    io_roles: dict[str, str], params: dict, config: Any, pretrained: str | None, **init: Any
) -> tuple[dict[str, str], dict]:
    """A train stage's io and params reading ``pretrained`` with `init`'s settings (``init`` overrides them).

    Without ``pretrained`` they are returned as they are: the stage starts from random weights.
    """
    if pretrained is None:
        return io_roles, params
    load = part(InitLoad, config.init).model_copy(update=init)
    return {**io_roles, "pretrained": pretrained}, {**params, "init": load}


def probe_stages(config: Any, stages: Sequence[Stage]) -> tuple[list[str], list[Stage]]:
    """(problems, probes): a linear probe (`<prefix>/probe`) of the model each `probe` entry's stage writes (and of
    the pretext stage), and one problem per entry that names no stage, or a stage that writes no model (no
    features to probe), listing the stages that do."""
    wanted = list(config.probe)
    if config.pretext.method != "none" and config.pretext.probe:
        wanted.append("pretext/pretrain")
    by_name = {stage.name: stage for stage in stages}
    with_model = [s.name for s in stages if s.params.get("io", {}).get("model") in s.outputs]
    problems = []
    for index, name in enumerate(wanted):
        if name not in with_model:
            what = "is no stage of this pipeline" if name not in by_name else "writes no model: nothing to probe"
            problems.append(f"probe[{index}]: {name!r} {what}; stages with a model: {', '.join(with_model)}")
    probes = [_probe(config, by_name[name]) for name in dict.fromkeys(wanted) if name in with_model]
    return problems, probes


def _probe(config: Any, stage: Stage) -> Stage:
    prefix = stage.name.rsplit("/", 1)[0]
    io_roles = {
        "split": stage.params["io"].get("split", SPLIT),
        "model": stage.params["io"]["model"],
        "probe": f"{prefix}/probe_scores",
    }
    params = {
        "data": stage.params.get("data", config.data),
        "model": stage.params.get("model", config.model),
        "batch_size": config.label.batch_size,
    }
    return refs.make_stage(
        f"{prefix}/probe",
        refs.probe_model,
        io_roles,
        (io_roles["probe"],),
        params,
        config.resources.evaluate,
        stage.generation,
    )


# --- the pipeline: the stages, their probes, and whether each role's workers can be used ----


def pipeline_of(config: Any, stages: Sequence[Stage]) -> Pipeline:
    """The pipeline of ``stages`` and the probes `probe` asks for; a ConfigError where a probe names no stage with a
    model, a role's workers would idle or `init` would freeze a backbone throughout, all at once (a bad probe hid
    the workers' problem until it was fixed)."""
    problems, probes = probe_stages(config, stages)
    every = [*stages, *probes]
    problems += idle_worker_problems(every) + frozen_throughout_problems(config, stages)
    if problems:
        raise ConfigError(problems)
    return Pipeline(config.name, every)


SHOWN_STAGES = 6  # stage names a message lists before "and N more" (a role recurs in every generation)

# The pipelines whose first train stage trains steps of its own, set by this key (when it is set): transfer's
# and source selection's pretraining, LwF's old network. Every other stage that applies `init` trains train.steps
# (KE's baseline: train.steps in each generation's stead).
OWN_STEPS = {
    "transfer": "transfer.pretrain_steps",
    "domain_similarity": "domain.pretrain_steps",
    "lwf": "lwf.old_steps",
}


def frozen_throughout_problems(config: Any, stages: Sequence[Stage]) -> list[str]:
    """One problem when `init.freeze_backbone_steps` is not below the steps of a stage that applies it.

    Why: that stage trains its classifier alone to its last step, so the pretrained backbone never trains
    and `init.backbone_lr_scale` changes nothing (5000 against train.steps 200 used to be accepted), where
    train.warmup_steps as long as training is refused. Asked of the built stages, as the unused-knob check
    is: FitNets' distillation stage, which sets its own freeze of 0, is not held to it.
    """
    freeze = config.init.freeze_backbone_steps
    short: dict[str, tuple[int, list[str]]] = {}  # key setting the steps -> (the fewest, the stages)
    for stage in stages:
        if freeze == 0 or not _applies_init(stage, config.init):
            continue
        steps, key = _trained_steps(config, stage)
        if freeze >= steps:
            fewest, names = short.get(key, (steps, []))
            short[key] = (min(fewest, steps), [*names, stage.name])
    if not short:
        return []
    keys = sorted(short, key=lambda key: short[key][0])
    than = " and ".join(f"{key} ({short[key][0]}, trained by {_listed(short[key][1])})" for key in keys)
    return [
        f"init.freeze_backbone_steps: expected fewer steps than {than}, got {freeze}: the pretrained backbone "
        f"would never train and init.backbone_lr_scale would change nothing; lower init.freeze_backbone_steps "
        f"below {short[keys[0]][0]} (or raise {' and '.join(keys)})"
    ]


def _trained_steps(config: Any, stage: Stage) -> tuple[int, str]:
    """(the steps ``stage`` trains, the key that sets them)."""
    own = OWN_STEPS.get(config.pipeline)
    if own is not None and stage.name == gen(0, "train"):
        section, field_name = own.split(".")
        steps = getattr(getattr(config, section), field_name)
        if steps is not None:
            return steps, own
    return stage.params["train"].steps, "train.steps"


def idle_worker_problems(stages: Sequence[Stage]) -> list[str]:
    """One line per `resources.<role>` whose workers > 1 some stage of the role cannot divide its work among.

    Why: such a stage runs its whole job on every worker and keeps rank 0's result, so the extra
    workers only repeat it while holding their CPUs and GPUs (Noisy Student's labeling given 4
    workers labeled every image 4 times). Only a body declared ``splits_work``
    (pipelines.stages.refs) uses them.
    """
    by_role: dict[str, list[Stage]] = {}
    for stage in stages:
        role = getattr(stage, "role", None)
        if role is not None and stage.resources.workers > 1:
            by_role.setdefault(role, []).append(stage)
    problems = []
    for role, covered in by_role.items():
        whole = [stage.name for stage in covered if not getattr(stage.fn, "splits_work", False)]
        if not whole:
            continue
        workers = covered[0].resources.workers
        if len(whole) == len(covered):
            which = "it runs" if len(whole) == 1 else "they run"
        else:
            which = f"{_listed(whole)} {'runs' if len(whole) == 1 else 'run'}"
        problems.append(
            f"resources.{role}.workers: {workers} workers, but resources.{role} covers {_listed(covered)} in this "
            f"pipeline and {which} on one worker: each extra worker would only repeat the whole job; "
            f"set resources.{role}.workers=1"
        )
    return problems


def _listed(stages: Sequence[Stage] | Sequence[str]) -> str:
    names = [stage if isinstance(stage, str) else stage.name for stage in stages]
    more = len(names) - SHOWN_STAGES
    return ", ".join(names[:SHOWN_STAGES]) + (f" and {more} more" if more > 0 else "")


# --- preflight: what only the data (or the weights) can reveal ------------------------------


def preflight_semi_supervised(config: Any) -> list[str]:
    """Problems only the data can reveal (a missing root, too few images, no unlabeled set), as `key: message` lines."""
    return split.preflight_split(config.data.model_dump()) + preflight_start(config)


def preflight_supervised(config: Any) -> list[str]:
    """The same check for pipelines that need no unlabeled images (KE, distillation)."""
    return split.preflight_supervised_split(config.data.model_dump()) + preflight_start(config)


def preflight_with_unused_knobs(
    data_check: Callable[[Any], list[str]], build: Callable[[Any], Pipeline]
) -> Callable[[Any], list[str]]:
    """The preflight of a pipeline with no checks of its own: ``data_check`` (``preflight_semi_supervised`` or
    ``preflight_supervised``), then `init` settings no stage of ``build``'s pipeline would apply.

    Why one function: crest, noisy_student, distill, ke and fitnets each wrote the same two lines; the other
    builders check more (their source or old task) and keep a preflight of their own.
    """

    def preflight(config: Any) -> list[str]:
        """What only the data and the starting weights reveal, and `init` settings that no stage of this pipeline
        would apply: here they act only on stages that `init.source` or the pretext encoder starts."""
        return data_check(config) + unused_transfer_knob_problems(config, build)

    return preflight


TRANSFER_KNOBS = ("freeze_backbone_steps", "backbone_lr_scale")  # how `init` trains the weights it loads


def unused_transfer_knob_problems(config: Any, build: Callable[[Any], Pipeline]) -> list[str]:
    """One problem when `init.freeze_backbone_steps` or `init.backbone_lr_scale` is set but no stage would apply it.

    Why: they act only on a train stage that starts from weights it did not make itself (`init.source`, the
    pretext encoder, transfer's and source selection's pretraining, LwF's old network). crest, noisy_student,
    distill, ke and fitnets without `init.source` or `pretext.method` have none, and their runs trained every
    layer at the full rate as if the keys were not there. Asked of the built stages, so each pipeline's wiring
    decides: a stage applies them exactly when it reads `init` with the file's values (FitNets' distillation
    stage reads fixed ones, the defaults, whatever the file says). With `init.source` or `pretext.method`
    every pipeline starts its train stages from those weights (InitSection), and the source is not found again.
    """
    init = config.init
    changed = [
        f"init.{knob}" for knob in TRANSFER_KNOBS if getattr(init, knob) != type(init).model_fields[knob].default
    ]
    if not changed or init.source is not None or config.pretext.method != "none":
        return []
    try:
        stages = build(config).stages
    except (ConfigError, PipelineError):  # the build's own problems are reported as such
        return []
    if any(_applies_init(stage, init) for stage in stages):
        return []
    named = " and ".join(changed)
    subject, pronoun = (f"{changed[0]}: acts", "it") if len(changed) == 1 else (f"init: {named} act", "they")
    return [
        f"{subject} only on a train stage that starts from pretrained weights, and this {config.pipeline} pipeline "
        f"has none without init.source or pretext.method, so {pronoun} would change nothing: set init.source or "
        f"pretext.method to start from pretrained weights, or remove {named}"
    ]


def _applies_init(stage: Stage, init: Any) -> bool:
    """Whether ``stage`` trains from loaded weights with `init`'s freeze_backbone_steps and backbone_lr_scale."""
    load = stage.params.get("init")
    return load is not None and all(getattr(load, knob) == getattr(init, knob) for knob in TRANSFER_KNOBS)


ACCEPTED_WEIGHTS = (
    "a torch state dict or a Relay checkpoint saved with torch.save (a .pt file), models:/NAME@ALIAS or "
    "run:RUN_ID/STAGE"
)
# How torch.save's files start: a zip archive (torch 1.6 on), or the legacy format's pickled magic number.
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80\x02\x8a\n")
UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")  # a class torch.load(weights_only=True) refused


def not_a_checkpoint(location: str, reason: str) -> str:
    """The one line for weights at ``location`` that load as no state dict: why, and what init.source takes."""
    return f"init.source: {location} is not a checkpoint Relay can read ({reason}); point init.source at {ACCEPTED_WEIGHTS}"


def load_failure(data: bytes, exc: Exception) -> str:
    """Why torch.load(weights_only=True) could not read ``data``, in the user's terms.

    Why not torch's own text: 7 lines advising ``weights_only=False`` (which runs whatever code the
    file holds) and an issue filed with PyTorch, neither for a Relay user to do; and a file cut short
    fails with a zip reader's "negative seek value", which names neither the file nor the fix.
    """
    unsafe = UNSAFE_GLOBAL.search(str(exc))
    if unsafe:
        return f"it stores an object of class {unsafe[1]}; Relay loads only tensors and plain values, never code"
    if not data:
        return "the file is empty"
    if data.startswith(TORCH_FILE_STARTS):
        return "a torch file cut short or damaged; save or copy it again"
    return "not a file torch.save wrote"


def preflight_start(config: Any) -> list[str]:
    """`init.source` found, readable, and fitting `model` layer by layer (torch imported only when it is set)."""
    if config.init.source is None:
        return []
    try:
        found = resolve_source(config.init.source, config.run, config.tracking)
    except ConfigError as exc:
        return exc.problems
    import torch

    from pipelines import models, transfer

    try:
        raw = read_bytes(found.location)
    except (OSError, ValueError) as exc:  # hashed a moment ago by resolve_source: it went or its storage failed
        return [f"init.source: cannot read {found.location} ({exc}); check that it is still there and readable"]
    try:
        loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's errors share no class: whatever it raised, the file is no checkpoint
        return [not_a_checkpoint(found.location, load_failure(raw, exc))]
    try:
        if not isinstance(loaded, Mapping):
            raise ValueError(f"it holds a {type(loaded).__name__}, not a state dict")
        weights = transfer.shapes(transfer.state_dict_of(loaded))
    except ValueError as exc:
        return [not_a_checkpoint(found.location, str(exc))]
    trained_on = network_input(config.data)
    if trained_on is None:  # the dataset cannot be read: the data preflight says why
        return []
    channels, classes = trained_on
    network = models.create_model(config.model.name, classes, channels)
    problems = transfer.weight_problems(transfer.shapes(network.state_dict()), weights, config.init.head == "keep")
    said = [f"init.source: {found.source} does not fit model.name {config.model.name!r}: {p}" for p in problems]
    why = channels_said(weights, channels)
    if said and why:
        said[0] = f"{said[0]} ({why})"
    return said


def channels_said(weights: Mapping[str, tuple[int, ...]], channels: int) -> str | None:
    """In words, when the weights' first convolution takes other images than the dataset's: a layer's shapes
    (``[32, 1, 3, 3]`` against ``[32, 3, 3, 3]``) left the user to work out that 1 is the channel count."""
    first = next((shape for shape in weights.values() if len(shape) == 4), None)
    if first is None or first[1] == channels:
        return None
    return f"the weights take {first[1]}-channel images; this dataset's are {channels}-channel"


def network_input(data: Any) -> tuple[int, int] | None:
    """(image channels, classes) of the network a run trains on the dataset `data` names, known before it runs;
    None when a sharded dataset's manifest cannot be read (the data preflight reports that).

    Why a sharded dataset too: its channels and classes are in its manifest (dataset.json, what the train
    stage reads them from), and weights of another channel count were only refused when `g00/train` loaded
    them, failing the run midway with a FAILED run record instead of exit 2 before anything was written.
    """
    if data.name != SHARDED:
        classes = len(data.classes) if data.classes else load_labels(data.name, data.root).num_classes
        return image_shape(data.name, data.image_size)[0], classes
    try:
        manifest = read_manifest(data.uri)
    except DatasetError:
        return None
    return manifest.image_shape[0], len(data.classes) if data.classes else manifest.num_classes
