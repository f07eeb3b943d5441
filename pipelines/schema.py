"""Config sections shared by Relay's pipelines: pydantic models that reject unknown keys.

Every number a user can set is validated here (or in a pipeline's own section, which lives in
its builder module), once, when the file is loaded. The builders put these validated sections
into the stages' params as they are, and the stage bodies read their attributes: no stage, loop
or settings dataclass checks a bound again. `part` cuts the piece of a section one stage reads,
so that only that piece enters the stage's fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from orchestrator.config import ModelSource, ModelSourceText, PipelineConfig, StrictModel
from pipelines.data import DATASET_REQUIRES_ROOT, DATASETS
from pipelines.datasets.catalog import SHARDED
from pipelines.long_tail import empty_class_problem
from pipelines.model_names import MODEL_NAMES, check_stochastic_depth

# Upper bounds for values that have no natural one: far above any real use, low enough that a typo
# (an extra zero, 1e8) is refused when the file is loaded instead of exhausting memory or waiting
# on resources no node has.
MAX_BATCH = 1 << 16
MAX_SHARD = 1 << 20  # images per labeling shard: one shard's images and outputs are held at once
MAX_WIDTH = 1 << 16  # a layer's width (a projection head's output)
MAX_NODE_CPUS = 1024
MAX_NODE_GPUS = 64
MAX_GENERATIONS = 1000

Part = TypeVar("Part", bound=BaseModel)


def part(model: type[Part], section: BaseModel) -> Part:
    """The fields of ``section`` that ``model`` declares, as a ``model``: the piece of a section one stage reads.

    A stage's params enter its fingerprint, so a stage that carried a whole section would rerun
    whenever any key of it changed (sweeping ``crest.alpha`` would retrain every generation).
    Built without validating again: ``section`` was validated when the file was loaded.
    """
    return model.model_construct(**{name: getattr(section, name) for name in model.model_fields})


def registered(valid: Iterable[str], what: str) -> AfterValidator:
    """A field validator that rejects a name not in ``valid`` (a registry), naming the valid ones."""
    names = sorted(valid)

    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(names)}")
        return value

    return AfterValidator(check)


def absolute_folder(path: str | None) -> str | None:
    """A folder setting made absolute (``~`` expanded) when the config is read, as the workspace is.

    Why: the saved config then names the same folder to `relay resume` and to Ray workers from any
    other directory; `data.root=small` given in one directory was saved as `small`, and a resume from
    another failed with "no such path" or, worse, read another `small/`. Symlinks are kept as the
    user named them and nothing is read from disk: whether the folder is there is the preflight's.
    """
    return os.path.abspath(os.path.expanduser(path)) if path else path


def absolute_local_uri(uri: str | None) -> str | None:
    """A dataset URI that is a local path made absolute like ``absolute_folder``; one with a scheme (s3://) as given.

    Why: `data.uri=data/digits` was saved as typed, and `relay resume` from another directory said
    "no shards here ... create the dataset with relay data import" of a dataset that was there.
    """
    return absolute_folder(uri) if uri and "://" not in uri else uri


def absolute_weights_file(source: str | None) -> str | None:
    """An `init.source` that names a local file made absolute like ``absolute_folder``; ``models:/...``,
    ``run:...`` and a URI with a scheme (s3://) as given.

    Why: `init.source=mine.pt` was saved as typed in the run's config, and `relay resume` from another
    directory said "the data changed since run ... started, or is gone: no weights file at /OTHER/mine.pt".
    """
    if source is None or "://" in source or ModelSource.parse(source).kind != "file":
        return source
    return absolute_folder(source.strip())


def distinct_classes(classes: list[int | str]) -> list[int | str]:
    """Two or more classes given by number (>= 0) or by name, each once; names become numbers when the config
    is read (pipelines/class_names.py), so the stages only ever see numbers.

    The count is checked here, not by pydantic's ``min_length``, whose "Value should have at least 2 items after
    validation" said nothing of classes or of what to write.
    """
    if len(classes) < 2:
        raise ValueError(
            f"expected at least 2 classes (a classifier needs two to tell apart), got {classes}; "
            "list two or more class numbers or names, e.g. [0, 1] or [cat, dog]"
        )
    if len(set(classes)) != len(classes) or any(isinstance(c, int) and c < 0 for c in classes):
        raise ValueError(f"expected distinct class numbers >= 0 or class names, got {classes}; list each class once")
    return classes


def class_items(value: Any) -> Any:
    """A list of class numbers or names as it is; ONE ValueError for the whole list when an item is neither.

    Why: pydantic checked each item on its own, against int and then str, and `data.class_order`
    of ten words said "must be a valid integer" ten times, with no word on what the key takes.
    """
    if not isinstance(value, list):
        return value  # not a list at all: pydantic's one "must be a valid list" says so
    wrong = [item for item in value if not _class_item(item)]
    if not wrong:
        return value
    scalar = next((item for item in wrong if isinstance(item, bool | float)), None)
    quotes = "" if scalar is None else f" (a name YAML reads as a number or a boolean, as {scalar!r}, goes in quotes)"
    raise ValueError(
        f"expected a list of class numbers (whole numbers >= 0) or class names, got {value!r}; "
        f"write each class as its number or its name{quotes}"
    )


def _class_item(item: Any) -> bool:
    """A class number (an int, or a float of a whole number as YAML may write one) or a class name."""
    if isinstance(item, bool):
        return False
    return isinstance(item, int | str) or (isinstance(item, float) and item.is_integer())


FolderPath = Annotated[str | None, AfterValidator(absolute_folder)]
# Classes of the config's dataset, by number or by name (an image folder's folder name, a CIFAR class).
ClassList = Annotated[list[int | str], BeforeValidator(class_items), AfterValidator(distinct_classes)]
# The order of the task's classes (`data.class_order`), by number or by name; names become numbers as ClassList's do.
ClassOrder = Annotated[list[int | str], BeforeValidator(class_items)]
DatasetURI = Annotated[str | None, AfterValidator(absolute_local_uri)]
WeightsSource = Annotated[ModelSourceText | None, AfterValidator(absolute_weights_file)]
DatasetName = Annotated[str, registered([*DATASETS, SHARDED], "dataset")]
ModelName = Annotated[str, registered(MODEL_NAMES, "model")]


class DataSection(StrictModel):
    """The dataset and its long-tailed split (docs/ALGORITHMS.md, Long-tailed splits).

    head_count is N_1, imbalance_ratio is gamma = N_1 / N_L, labeled_fraction is beta;
    fold seeds the split (the paper reports 5 folds). Datasets without their own test
    split hold out `holdout_per_class` images per class first, as a balanced test set.

    `name: parquet` reads a sharded dataset at `uri` (made by `relay data import`; any pyarrow
    URI), and `digest` optionally pins which one. buffer_mb bounds the decoded images a worker
    keeps per subset: a subset that fits is held whole and shuffled uniformly, a larger one
    streams through a shuffle window of that size (docs/DATA.md). It shapes the batches, so it applies to in-memory datasets alike. loader_workers
    decode shards beside the training or labeling process (0: in it).
    classes makes the task a subset of the dataset's classes, relabelled 0..k-1 in the order given
    (transfer learning's source and target tasks, LwF's old and new task).
    """

    name: DatasetName = "digits"
    root: FolderPath = None  # made absolute when read
    uri: DatasetURI = None  # a local path made absolute when read
    digest: str | None = None
    # Written by Relay, not by users: what the folder at `root` held when the run was configured (sha256 over
    # each file's path, size and mtime; pipelines/data.py:root_digest), so the stage cache tells a changed
    # folder from the old one. Recomputed whenever a config file is loaded; a value set by hand is replaced.
    root_digest: str | None = None
    buffer_mb: int = Field(256, ge=1, le=1 << 16)  # up to 64 GiB of shuffle window
    loader_workers: int = Field(1, ge=0, le=64)
    head_count: int = Field(130, gt=0)
    imbalance_ratio: float = Field(10.0, ge=1.0)
    labeled_fraction: float = Field(0.1, gt=0.0, le=1.0)
    holdout_per_class: int = Field(40, ge=0)
    fold: int = Field(0, ge=0)
    # Square side every image is read or resized to; null: the loader's own (digits: 16, its 8x8 upsampled).
    image_size: int | None = Field(None, ge=4, le=1024)
    class_order: ClassOrder | None = None
    classes: ClassList | None = None

    def fingerprint_view(self) -> dict[str, Any]:
        """The section as a stage's fingerprint reads it: without ``uri`` where ``digest`` pins the dataset.

        Why: every stage's params carry the data section, so a sharded dataset copied to another URI
        (local to S3, onto a cluster's mount: `relay data import` copies it with its digest checked)
        reran every stage, although the digest, the sha256 of every shard, says it is the same data.
        `relay run` pins the digest from the manifest before anything runs, so two datasets that
        differ in one byte never share a fingerprint; without a digest the URI stays in.
        """
        view = self.model_dump(mode="json")
        if self.name == SHARDED and self.digest:
            view.pop("uri", None)
        return view

    @model_validator(mode="after")
    def _every_class_keeps_an_image(self) -> DataSection:
        """Refuse a long tail whose rarest class gets 0 images (N_L = head_count / imbalance_ratio below 1).

        Checked here, before the dataset is read, because N_L does not depend on the number of classes:
        so `relay validate`, `relay run`, each `relay tune` trial's values and every pipeline's data section
        refuse it alike. A task of one class has no tail.
        """
        if self.classes is not None and len(self.classes) < 2:
            return self
        problem = empty_class_problem(self.head_count, self.imbalance_ratio, self._rarest_class())
        if problem:
            raise ValueError(problem)
        return self

    def _rarest_class(self) -> str:
        """The class the tail's last rank falls on, as far as the config says which it is (no dataset read)."""
        if self.class_order:
            return f"class {self.class_order[-1]!r} (the last of data.class_order)"
        if self.classes:
            return f"class {self.classes[-1]!r} (the last of data.classes)"
        return "the rarest class (the last of the task's classes)"

    @model_validator(mode="after")
    def _where_the_data_is(self) -> DataSection:
        if self.name in DATASET_REQUIRES_ROOT and not self.root:
            raise ValueError(
                f"dataset {self.name!r} reads local files: set data.root to the folder that holds it "
                "(Relay never downloads data)"
            )
        if self.name == SHARDED and (not self.uri or self.root):
            raise ValueError(
                "dataset 'parquet' reads shards: set data.uri to what `relay data import` wrote "
                "(a path or s3://...) and leave data.root unset"
            )
        if self.name == SHARDED and self.image_size is not None:
            raise ValueError(self._size_of_shards())
        if self.root and self.name not in DATASET_REQUIRES_ROOT and self.name != SHARDED:
            raise ValueError(
                f"data.root applies only to datasets read from a folder ({', '.join(sorted(DATASET_REQUIRES_ROOT))}); "
                f"dataset {self.name!r} reads none, so the folder would be ignored: set data.name=imagefolder to train "
                "on the images there, or remove data.root"
            )
        if self.name != SHARDED and (self.uri or self.digest):
            raise ValueError(self._shard_keys_elsewhere())
        if self.root_digest and self.name not in DATASET_REQUIRES_ROOT:
            raise ValueError(
                f"data.root_digest is written by Relay for datasets read from data.root "
                f"({', '.join(sorted(DATASET_REQUIRES_ROOT))}); dataset {self.name!r} reads no data.root: "
                "remove data.root_digest"
            )
        return self

    def _size_of_shards(self) -> str:
        """Why data.image_size of a sharded dataset is refused, and how to unset it wherever it was set.

        Why both ways: crest_digits.yaml sets `image_size: 16`, so `data.name=parquet` on the command line
        was refused with "leave data.image_size unset", which the user had, and no word on the override
        that unsets a file's key. Refused even when it equals the imported size: this check reads no files.
        """
        return (
            f"data.image_size: {self.image_size} resizes an in-memory dataset, but a sharded dataset (data.name="
            f"{SHARDED}) keeps the size it was imported at (`relay data import --image-size` for image folders); "
            "unset data.image_size: drop it where it is set, or override a file's with data.image_size=null"
        )

    def _shard_keys_elsewhere(self) -> str:
        """Why data.uri / data.digest of a dataset other than the sharded one are refused, and the two fixes.

        Why each fix is named: the message said dataset 'digits' "uses data.root", which it does not
        read, and gave no fix; the user either meant the shards (data.name=parquet) or not (remove them).
        """
        given = [key for key, value in (("data.uri", self.uri), ("data.digest", self.digest)) if value]
        keys = " and ".join(given)
        return (
            f"{given[0]}: data.uri and data.digest belong to dataset 'parquet' (the shards `relay data import` "
            f"writes); dataset {self.name!r} does not read them, so {keys} would be ignored: set data.name=parquet "
            f"to train on the shards at data.uri, or remove {keys}"
        )


class ModelSection(StrictModel):
    """Which registered network to train (pipelines.models.MODELS).

    stochastic_depth is the drop probability of the LAST residual block (block i of n drops with
    stochastic_depth * (i + 1) / n); the survival probability 0.8 of docs/ALGORITHMS.md, Noisy
    Student is 0.2 here. Only residual models (pipelines.models.RESIDUAL_MODELS) accept a
    positive value.
    """

    name: ModelName = "small_cnn"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    stochastic_depth: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _stochastic_depth_needs_residual_blocks(self) -> ModelSection:
        check_stochastic_depth(self.name, self.stochastic_depth)
        return self


class TrainSection(StrictModel):
    """FixMatch optimisation (docs/ALGORITHMS.md, FixMatch); steps are optimizer steps per generation.

    batch_size is the GLOBAL labeled batch: it does not grow with data-parallel workers.
    """

    steps: int = Field(400, gt=0)
    batch_size: int = Field(64, gt=0, le=MAX_BATCH)
    unlabeled_ratio: int = Field(7, ge=1)
    lr: float = Field(0.03, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0.0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    threshold: float = Field(0.95, ge=0.0, le=1.0)
    lambda_u: float = Field(1.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    report_every: int = Field(50, gt=0)
    checkpoint_every: int = Field(50, ge=0)  # in-stage checkpoint (resume point after a crash); 0: none

    @model_validator(mode="after")
    def _unlabeled_batch_within_bounds(self) -> TrainSection:
        """The unlabeled batch (batch_size x unlabeled_ratio) is bounded like the labeled one: a ratio of 1e8
        passed, and the first step asked for billions of images."""
        unlabeled = self.batch_size * self.unlabeled_ratio
        if unlabeled > MAX_BATCH:
            raise ValueError(
                f"train.unlabeled_ratio: the unlabeled batch train.batch_size x train.unlabeled_ratio = {unlabeled} "
                f"is over {MAX_BATCH}; lower train.unlabeled_ratio (FixMatch uses 7) or train.batch_size"
            )
        return self


class WeakAugment(StrictModel):
    """Weak augmentation: flip and crop with reflect padding (FixMatch's 12.5%).

    flip null (the default) takes the dataset's own default (pipelines.data.MIRROR_INVARIANT; a sharded
    dataset, its import's source): digits and the synthetic set are never mirrored unless asked,
    natural images (CIFAR, image folders) are. true or false always wins.
    """

    flip: bool | None = None
    pad_fraction: float = Field(0.125, ge=0.0, lt=0.5)


class StrongAugment(StrictModel):
    """Strong augmentation: RandAugment N ops at magnitude M (0..10), then Cutout.

    style "torchvision" applies every op at the fixed magnitude; "fixmatch" applies each
    op with probability 0.5 at a random magnitude up to M.
    """

    style: Literal["torchvision", "fixmatch"] = "torchvision"
    num_ops: int = Field(2, ge=0, le=14)
    magnitude: int = Field(9, ge=0, le=10)
    cutout: float = Field(0.5, ge=0.0, le=1.0)


class AugmentSection(StrictModel):
    weak: WeakAugment = WeakAugment()
    strong: StrongAugment = StrongAugment()


class LabelSection(StrictModel):
    """Batch inference that writes the pseudo-label table.

    shard_size is the number of unlabeled images per shard: the unit that goes to one
    inference actor and one Parquet row group. The table does not depend on how many
    actors (resources.pseudo_label.workers) share the shards.
    """

    batch_size: int = Field(512, gt=0, le=MAX_BATCH)
    shard_size: int = Field(2048, gt=0, le=MAX_SHARD)


class StageResources(StrictModel):
    """What the stages of one role (`resources.<role>`) ask Ray for.

    workers > 1 splits a stage's work where its body can (CReST's data-parallel training and
    sharded labeling); a stage that cannot is refused more than one when the pipeline is built
    (pipelines/builders/common.py, idle_worker_problems), since every extra worker would only
    repeat its whole job. custom: Ray custom resources per worker (`{gpu_node: 1}`), which pin
    the stage to the nodes started with them (`ray start --resources '{"gpu_node": 4}'`).
    """

    # The `resources` key this section was given under (set by StageRoles), so that a stage made
    # from it can say which key to fix; not a setting, so not dumped and not in any fingerprint.
    _role: str | None = PrivateAttr(None)

    num_cpus: float = Field(1.0, gt=0.0, le=MAX_NODE_CPUS)
    num_gpus: float = Field(0.0, ge=0.0, le=MAX_NODE_GPUS)
    workers: int = Field(1, ge=1, le=4096)
    custom: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)

    @field_validator("custom")
    @classmethod
    def _no_built_in_resource(cls, custom: dict[str, float]) -> dict[str, float]:
        """Ray's own resources have their own settings: `{CPU: 1}` here read as a custom resource no node has."""
        own = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": None, "object_store_memory": None}
        for name in custom:
            if name in own:
                instead = f"set {own[name]} beside custom instead" if own[name] else "Relay does not set it per stage"
                raise ValueError(f"{name} is one of Ray's own resources, not a custom one; remove it ({instead})")
        return custom


# Every stage role some pipeline has, and what its stages do (for the message when a file sets a
# role its pipeline lacks).
ROLE_STAGES = {
    "data": "the split and the import of init.source",
    "train": "training, the pretext stage",
    "evaluate": "evaluation, linear probes",
    "pseudo_label": "labeling the unlabeled images; in LwF, recording the old network's outputs",
    "rebalance": "CReST's class-rebalanced selection",
    "filter": "Noisy Student's confidence filter",
}


class StageRoles(StrictModel):
    """`resources` of a pipeline: one StageResources per stage role it has; every pipeline has these three.

    A pipeline with more roles (labeling, a selection) declares them in a subclass, so that a role it
    has no stage for is refused instead of silently ignored (`resources.filter` in KE did nothing).
    """

    data: StageResources = StageResources()
    train: StageResources = StageResources()
    evaluate: StageResources = StageResources()

    @model_validator(mode="before")
    @classmethod
    def _roles_of_this_pipeline(cls, value: Any) -> Any:
        """A role of another pipeline, named as such: the generic "unknown key" hid that the file was fine elsewhere."""
        if isinstance(value, dict):
            foreign = [key for key in value if key in ROLE_STAGES and key not in cls.model_fields]
            if foreign:
                stages = " or ".join(f"{role} stage ({ROLE_STAGES[role]})" for role in foreign)
                keys = " and ".join(f"resources.{role}" for role in foreign)
                raise ValueError(
                    f"this pipeline has no {stages}, so {keys} would be ignored; its stage roles are "
                    f"{', '.join(cls.model_fields)}: remove {keys}"
                )
        return value

    @model_validator(mode="after")
    def _name_the_roles(self) -> StageRoles:
        for role in type(self).model_fields:
            getattr(self, role)._role = role
        return self


class LabelingRoles(StageRoles):
    """`resources` of a pipeline with a labeling stage (`pseudo_label`)."""

    pseudo_label: StageResources = StageResources()


class ResourcesSection(LabelingRoles):
    """Per-stage resources of the CReST pipeline."""

    rebalance: StageResources = StageResources()


# --- Knowledge Evolution, Noisy Student, distillation ------------------------------------------


class SupervisedTrainSection(StrictModel):
    """Supervised optimisation of KE, Noisy Student and distillation; steps are optimizer steps per generation.

    Defaults follow the KE paper (docs/ALGORITHMS.md, Knowledge Evolution: SGD lr 0.256, batch 32, wd 1e-4, cosine with
    warm-up, label smoothing 0.1 in its config). class_balanced_beta 0 and cutmix_alpha 0 turn those
    options off; loss is the labeled loss (docs/ALGORITHMS.md, Class-balanced loss): softmax CE, the
    per-class sigmoid CE or the sigmoid focal loss with focal_gamma, each class-balanced when
    class_balanced_beta > 0; augment is the input noise: "weak" (flip + crop), "strong" (weak + RandAugment, the
    `augment.strong` settings) or "none". ema_decay null trains without an EMA (KE hands on the LAST
    weights, never an average).
    """

    steps: int = Field(300, gt=0)
    batch_size: int = Field(32, gt=0, le=MAX_BATCH)
    lr: float = Field(0.256, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0.0)
    schedule: Literal["warmup_cosine", "cosine", "constant"] = "warmup_cosine"
    warmup_steps: int = Field(0, ge=0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    class_balanced_beta: float = Field(0.0, ge=0.0, lt=1.0)
    loss: Literal["ce", "focal", "sigmoid"] = "ce"
    focal_gamma: float = Field(1.0, ge=0.0)
    cutmix_alpha: float = Field(0.0, ge=0.0)
    ema_decay: float | None = Field(None, ge=0.0, lt=1.0)
    augment: Literal["none", "weak", "strong"] = "weak"
    report_every: int = Field(50, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _hard_targets_for_per_class_losses(cls, data: Any) -> Any:
        """``loss: focal`` or ``sigmoid`` without ``label_smoothing`` trains on hard targets (0, not 0.1).

        Why: the 0.1 that suits softmax CE turned the per-class targets into 0.91 and 0.01, so a
        confident right prediction kept a loss (focal 0.43, where the paper's is 0) and its logit was
        pushed down. Set ``label_smoothing`` to smooth them anyway.
        """
        if isinstance(data, dict) and data.get("loss") in ("focal", "sigmoid") and "label_smoothing" not in data:
            return {**data, "label_smoothing": 0.0}
        return data

    @model_validator(mode="after")
    def _warmup_shorter_than_training(self) -> SupervisedTrainSection:
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"train.warmup_steps: expected fewer warm-up steps than train.steps ({self.steps}), "
                f"got {self.warmup_steps}; lower train.warmup_steps (or raise train.steps)"
            )
        return self


def check_warmup_fits(steps: int | None, train: SupervisedTrainSection, key: str) -> None:
    """ValueError unless a stage of ``steps`` (set by ``key``; None: train.steps) has room for train's warm-up.

    Why: a pretraining or hint stage of its own length (`domain.pretrain_steps: 5`) shares
    train.warmup_steps, and one shorter than the warm-up failed when it ran (exit 1, a resume
    that fails alike), where `train.steps` that short is refused when the file is read.
    """
    if steps is not None and train.warmup_steps >= steps:
        raise ValueError(
            f"{key}: expected more steps than train.warmup_steps ({train.warmup_steps}), got {steps}; "
            f"raise {key} (or lower train.warmup_steps)"
        )


class StudentResourcesSection(LabelingRoles):
    """Per-stage resources of the Noisy Student pipeline."""

    filter: StageResources = StageResources()


class SupervisedDataSection(DataSection):
    """`data` of the supervised pipelines (KE, distillation): by default every training image is labeled
    and classes are balanced. A subclass, not an instance default, so that a file setting only
    `data.name` still gets these defaults (pydantic replaces a whole default instance).
    """

    imbalance_ratio: float = Field(1.0, ge=1.0)
    labeled_fraction: float = Field(1.0, gt=0.0, le=1.0)


# --- where training starts: pretrained weights, self-supervised pretext stage, linear probes ---


class InitSection(StrictModel):
    """Where the train stages' weights start (docs/ALGORITHMS.md, Transfer learning).

    source names weights from outside this run: a checkpoint file (a state dict or a Relay
    checkpoint), ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` from MLflow's model registry, or
    ``run:RUN_ID/STAGE`` of an earlier Relay run in this workspace; the driver finds it before the run
    starts. Each pipeline applies it to the train stages that would otherwise start from random
    weights (its builder's docstring says which). head "reset" gives the network a new classifier
    (a new task, other classes); "keep" loads the classifier too (the same classes).
    freeze_backbone_steps trains only the classifier for the first steps (a warm-up that keeps a
    random head from wrecking the pretrained features), and backbone_lr_scale multiplies the
    backbone's learning rate after that (fine-tuning with a lower rate for the pretrained layers).
    The last two act on every train stage that starts from weights it did not make itself: from
    `source` or the pretext stage, and the fine-tuning that follows transfer's and source selection's
    pretraining and LwF's old network. Not on stages that continue a network of the same run as it
    is: KE's later generations, and FitNets' distillation stage, which takes the hint stage's
    student whole (FitNets' second stage trains every layer from the start, so its builder sets
    freeze 0 and scale 1 there whatever `init` says; with `source` they still act on the teacher).
    """

    source: WeightsSource = None  # a local file made absolute when read
    head: Literal["reset", "keep"] = "reset"
    freeze_backbone_steps: int = Field(0, ge=0)
    backbone_lr_scale: float = Field(1.0, gt=0.0)


class PretextSection(StrictModel):
    """An optional self-supervised first stage (docs/ALGORITHMS.md, Self-supervised pretraining).

    method "rotnet" (4-way rotation CE) or "simclr" (NT-Xent over two views from the strong
    augmentation of `augment.strong`, temperature tau, a projection head of projection_dim) trains
    `model` on every training image of the split, labels unused; its backbone then starts the
    train stages (through `init`: head, freeze_backbone_steps, backbone_lr_scale). probe adds a
    linear probe of it (`pretext/probe`).
    """

    method: Literal["none", "rotnet", "simclr"] = "none"
    steps: int = Field(300, gt=0)
    batch_size: int = Field(128, ge=2, le=MAX_BATCH)
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    temperature: float = Field(0.5, gt=0.0)
    projection_dim: int = Field(64, gt=0, le=MAX_WIDTH)
    probe: bool = True
    report_every: int = Field(50, gt=0)


# The sections every pipeline file of this package has, in the order they are written out.
FILE_ORDER = (
    "pipeline",
    "name",
    "seed",
    "data",
    "model",
    "train",
    "augment",
    "label",
    "resources",
    "init",
    "pretext",
    "probe",
    "run",
    "tracking",
    "tune",
)


class PipelineFile(PipelineConfig):
    """The fields every pipeline file of this package shares; each builder's config adds its own section.

    ``pipeline``, ``name``, ``seed``, ``run``, ``tracking`` and ``tune`` are PipelineConfig's, which
    Relay reads from every file: ``pipeline`` selects the builder (a subclass narrows it to its own
    name) and ``name`` names the runs. ``init`` and ``pretext`` say where training starts; ``probe`` names stages (``g00/train``,
    ``pretext/pretrain``) whose model a linear probe scores on frozen features. ``data``, ``train`` and ``resources`` default to what most pipelines use (a long-tailed
    split, supervised training, the stage roles every pipeline has: data, train, evaluate); a pipeline that needs another kind
    (CReST's FixMatch training, KE's balanced supervised split) redeclares the field with its type.
    """

    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    train: SupervisedTrainSection = SupervisedTrainSection()
    augment: AugmentSection = AugmentSection()
    label: LabelSection = LabelSection()
    resources: StageRoles = StageRoles()
    init: InitSection = InitSection()
    pretext: PretextSection = PretextSection()
    probe: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _in_file_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The sections in the order a pipeline file has always been written in: PipelineConfig's
        run, tracking and tune after this package's shared sections, before the pipeline's own.

        Why: deriving from PipelineConfig moved them up, next to ``seed``, and the config.yaml a run
        saves (and MLflow keeps) would then have changed order for every pipeline.
        """
        dumped = handler(self)
        first = [key for key in FILE_ORDER if key in dumped]
        return {**{key: dumped[key] for key in first}, **{k: v for k, v in dumped.items() if k not in FILE_ORDER}}

    @model_validator(mode="after")
    def _one_start(self) -> PipelineFile:
        if self.init.source is not None and self.pretext.method != "none":
            raise ValueError(
                f"init.source ({self.init.source}) and pretext.method ({self.pretext.method}) both give the starting "
                "weights; set one of them (pretext.method=none or init.source=null)"
            )
        return self
