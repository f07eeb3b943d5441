"""Stage bodies by reference, so that building a pipeline imports no torch.

The body modules of `pipelines.stages` import torch, torchvision and matplotlib; the driver only
validates the config and builds the DAG, so the builders name the bodies here and the body's
module is imported when a worker (or the local executor) calls it. A `StageBody` carries the
`__module__` and `__qualname__` of the function it names: the engine reads those for fingerprints
and for warming workers, so a body by reference fingerprints exactly like the function itself.
It pickles as two strings, which is how Ray ships it. This is the only module of
`pipelines.stages` the builders import; tests/unit/pipelines/stages/test_refs.py checks that every
reference below names a real function.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.dag import Parallelism, Resources, Stage, StageContext, StageResult


class StageBody:
    """The stage function `module.name`, imported on first call (the engine's StageFn signature).

    ``reports``: the metric names the function reports (fnmatch patterns), where they are fixed,
    so that `relay validate` can refuse a tune metric no stage reports; None where they are not.
    ``splits_work``: whether the function divides its work among a stage's workers when it has more
    than one (data-parallel ranks, or shards through ``ctx.map_shards``, as the stage's
    ``Parallelism`` says). A function that does not runs whole on every worker, so the builders
    refuse it more than one (pipelines.builders.common.idle_worker_problems).
    """

    def __init__(
        self, module: str, name: str, reports: tuple[str, ...] | None = None, splits_work: bool = False
    ) -> None:
        self.__module__ = module
        self.__qualname__ = self.__name__ = name
        self.reports = reports
        self.splits_work = splits_work

    def __call__(self, ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
        return self.resolve()(ctx, inputs, params)

    def resolve(self) -> Any:
        """The function itself (imports its module)."""
        return getattr(importlib.import_module(self.__module__), self.__qualname__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StageBody) and (self.__module__, self.__qualname__) == (
            other.__module__,
            other.__qualname__,
        )

    def __hash__(self) -> int:
        return hash((self.__module__, self.__qualname__))

    def __repr__(self) -> str:
        return f"StageBody({self.__module__}.{self.__qualname__})"


# By role, as the DAG names the stages: `data/split`, `gKK/train`, `gKK/evaluate`, ...
split_data = StageBody("pipelines.stages.split", "split_data")  # CReST, Noisy Student: demands unlabeled images
split_supervised = StageBody("pipelines.stages.split", "split_supervised")  # KE, distillation
make_masks = StageBody("pipelines.stages.masks", "make_masks")
# FixMatch (CReST): each rank trains on its slice of the global batch (Parallelism.DATA)
train_generation = StageBody("pipelines.stages.train", "train_generation", splits_work=True)
train_network = StageBody("pipelines.stages.train_network", "train_network")  # KE, Noisy Student, distillation
EVALUATION_METRICS = ("balanced_accuracy", "accuracy", "tail_recall", "recall/*", "precision/*")
evaluate_generation = StageBody("pipelines.stages.evaluate", "evaluate_generation", EVALUATION_METRICS)
evaluate_network = StageBody(
    "pipelines.stages.evaluate_network", "evaluate_network", (*EVALUATION_METRICS, "dense_params")
)
# What evaluate_network adds where it reads KELS masks (KE's generations, whose builder declares them on those
# stages): left out of its own `reports` so that `tune.metric=evaluate/slim_accuracy` is refused elsewhere.
SLIM_METRICS = ("slim_accuracy", "slim_balanced_accuracy", "slim_params")
# CReST's and Noisy Student's labeling: shards through ctx.map_shards, on actors (Parallelism.SHARDS)
pseudo_label_generation = StageBody("pipelines.stages.pseudo_label", "pseudo_label_generation", splits_work=True)
rebalance_generation = StageBody("pipelines.stages.rebalance", "rebalance_generation")
filter_pseudo_labels = StageBody("pipelines.stages.filter", "filter_pseudo_labels")
import_weights = StageBody("pipelines.stages.pretrained", "import_weights")  # init.source -> `init/model`
pretrain_pretext = StageBody("pipelines.stages.pretext", "pretrain_pretext")  # RotNet, SimCLR
probe_model = StageBody("pipelines.stages.pretext", "probe_model")  # linear probe of any stage's model
record_outputs = StageBody("pipelines.stages.lwf", "record_outputs")  # LwF: the old network on the new data
learn_without_forgetting = StageBody("pipelines.stages.lwf", "learn_without_forgetting")  # LwF, fine-tuning, joint
evaluate_tasks = StageBody("pipelines.stages.lwf", "evaluate_tasks")  # old and new task, each by its head
train_hints = StageBody("pipelines.stages.hint", "train_hints")  # FitNets stage 1
rank_sources = StageBody("pipelines.stages.domain", "rank_sources")  # domain similarity (EMD)
pretrain_on_source = StageBody("pipelines.stages.domain", "pretrain_on_source")


# Roles whose outputs MLflow should see as lineage: models are logged and registered,
# datasets are logged as inputs of the runs that read them.
LINEAGE_ROLES = {"model": "model", "pseudo_labels": "dataset", "picks": "dataset", "recorded": "dataset"}


def lineage_of(io: Mapping[str, str], outputs: tuple[str, ...]) -> dict[str, str]:
    """Output artifact -> "model" | "dataset", for the outputs whose role is in LINEAGE_ROLES."""
    return {name: LINEAGE_ROLES[role] for role, name in io.items() if role in LINEAGE_ROLES and name in outputs}


@dataclass(frozen=True)
class RoleStage(Stage):
    """A Stage that remembers the `resources.<role>` key its resources came from (None: given as a mapping).

    Builder data, as ``lineage`` is, and not part of the fingerprint: it lets a builder name the key
    to fix when a role's setting does not fit a stage it covers.
    """

    role: str | None = None


def make_stage(
    name: str,
    fn: Any,
    io: dict[str, str],
    outputs: tuple[str, ...],
    params: dict,
    resources: Any,
    generation: int | None,
    parallelism: Parallelism = Parallelism.DATA,
) -> Stage:
    """A stage whose params carry its io roles; inputs are every io entry that is not an output.

    The bodies read their artifacts by role from ``params["io"]``; the engine does not know that
    convention, so the roles of the inputs are declared to it as well, as ``Stage.input_roles``
    (tracking tells a teacher from a starting point by them). ``io`` stays in ``params``, where it
    has always been part of the fingerprint, so existing caches stay valid.

    ``resources`` is a config's `StageResources` section (or a mapping of the same keys).
    """
    role = getattr(resources, "_role", None)
    if hasattr(resources, "model_dump"):
        resources = resources.model_dump()
    inputs = tuple(artifact for artifact in io.values() if artifact not in outputs)
    declared = getattr(fn, "reports", None)
    prefix = params.get("metric_prefix", "")
    return RoleStage(
        name=name,
        fn=fn,
        inputs=inputs,
        outputs=outputs,
        params={**params, "io": io},
        resources=Resources(**dict(resources)),
        generation=generation,
        lineage=lineage_of(io, outputs),
        input_roles={io_role: artifact for io_role, artifact in io.items() if artifact in inputs},
        parallelism=parallelism,
        reports=None if declared is None else tuple(prefix + name for name in declared),
        role=role,
    )
