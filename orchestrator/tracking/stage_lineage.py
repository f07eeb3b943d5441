"""A finished stage's lineage on its runs: the datasets and models it read, the models it wrote.

Apart from the tracker because this is what a stage read and wrote, not when its runs open and
close: which models taught it and which it started from (tags, and its generation's description),
its models logged once (an earlier attempt's reused), linked to its runs and registered. The tracker
hands over one ``ModelLog`` per stage: the client, the run's ids and its ``LineageGraph``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.records import StageRecord, TrackedArtifact
from orchestrator.tracking import lineage
from orchestrator.tracking.common import TAG_GENERATION, TAG_PIPELINE_RUN
from orchestrator.tracking.descriptions import TAG_NOTE, generation_note
from orchestrator.tracking.lineage import MODEL, LineageGraph
from orchestrator.tracking.registrations import RunRegistrations
from orchestrator.tracking.run_tree import is_generation_stage, metric_prefix, model_aliases


@dataclass(frozen=True)
class ModelLog:
    """Where a run's stages log their lineage and models: one value handed over per finished stage."""

    client: Any
    experiment_id: str
    run_id: str
    parent: str  # the pipeline run, which every logged model is linked to as well
    tags: Mapping[str, str]  # the run's identity tags, on every model it logs
    pipeline_name: str
    image_size: int | None  # for model signatures
    pyfunc_loader: str | None  # the pipeline spec's, named in its models' MLmodel files
    graph: LineageGraph
    log_models: bool
    registrations: RunRegistrations | None  # None: models logged, never registered (a sweep's trials)


def input_roles(record: StageRecord) -> dict[str, str] | None:
    """Input artifact -> its role in the stage's io (``teacher``, ``pretrained``, ``previous``), or None.

    From the record's ``input_roles`` (role -> artifact, as the stage declares them in ``Stage.input_roles``)
    where the runner reports them; a record without them is read as before: every model behind the
    inputs a teacher (``LineageGraph.models_read``).
    """
    roles = record.input_roles
    return None if roles is None else {name: role for role, name in roles.items()}


def started_from(starts: Sequence[str]) -> str:
    """The generation description's sentence on the weights its model started from; "" for none.

    Knowledge Evolution's ``g01/model`` continues from ``g00/model`` (its reset part re-initialised),
    a FixMatch from a pretext encoder: neither is a student of it, and the description said so.
    """
    if not starts:
        return ""
    return f" Its training started from the weights of {', '.join(f'`{name}`' for name in starts)}."


def logged_ids(model_ids: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """The LoggedModel ids of those of the model artifacts ``names`` this run logged (or linked)."""
    return [model_ids[name] for name in names if name in model_ids]


def tag_models_read(client: Any, runs: list[str], read: lineage.ModelsRead, model_ids: Mapping[str, str]) -> None:
    """``relay.teacher``: the models that taught the stage; ``relay.init_from``: those whose weights it started from.

    Why apart: every model behind a stage's inputs was tagged its teacher, so KE's gen-01 (which
    continues from gen-00's weights) and CReST's g00/train (started from a pretext encoder) named a
    teacher that none of them has.
    """
    for tag, names in ((lineage.TAG_TEACHER, read.teachers), (lineage.TAG_INIT_FROM, read.starts)):
        ids = logged_ids(model_ids, names)
        if ids:
            for target in runs:
                client.set_tag(target, tag, ",".join(f"models:/{i}" for i in ids))


def logged_before(client: Any, model_ids: Mapping[str, str], artifact: TrackedArtifact) -> Any:
    """The model an earlier attempt of this run logged for ``artifact`` (same bytes, READY), or None.

    Resuming after a SIGKILL re-tracks a stage whose run the dead driver never closed; its
    model was logged already, and logging it again would leave the first copy orphaned.
    """
    model_id = model_ids.get(artifact.name)
    if model_id is None:
        return None
    model = client.get_logged_model(model_id)
    same = model.tags.get(lineage.TAG_DIGEST) == artifact.digest and str(model.status) == "READY"
    return model if same else None


def log_lineage(log: ModelLog, runs: list[str], record: StageRecord) -> None:
    """Datasets and models the stage read as its inputs; the models it wrote logged and registered.

    ``runs``: the stage's run, then its generation's. The generation run shows the datasets, and the
    models its own stage read, so gen-NN reads "trained on these picks, taught by that model, started
    from that one" (``tag_models_read``).
    """
    read = log.graph.models_read(record.inputs, input_roles(record))
    read_ids = logged_ids(log.graph.model_ids, read.all)
    datasets = log.graph.datasets_in(record.inputs)
    models = [a for a in record.outputs.values() if a.lineage == MODEL]
    context = metric_prefix(record.stage)
    lineage.log_inputs(log.client, runs[:1], datasets, read_ids, context)
    lineage.log_inputs(log.client, runs[1:], datasets, read_ids if models else [], context)
    own = models and is_generation_stage(record.stage, record.generation)
    if models:  # a branch's (`baseline/train` in gen-01) would overwrite what its generation's own stage read
        tag_models_read(log.client, runs if own else runs[:1], read, log.graph.model_ids)
    if own:
        note = generation_note(log.run_id, record.generation, models, list(read.teachers))
        log.client.set_tag(runs[1], TAG_NOTE, note + started_from(read.starts))
    if log.log_models:
        for artifact in models:
            log_model(log, runs, artifact, record.stage, record.generation)


def log_model(
    log: ModelLog, runs: list[str], artifact: TrackedArtifact, stage_name: str, generation: int | None
) -> None:
    """A model the stage wrote: logged (or one logged before linked), and registered as a version.

    Its generation's alias (and ``newest``, on the last generation's model) moves onto the version
    when the run finishes (``RunRegistrations.point_aliases``).
    """
    tags = {TAG_PIPELINE_RUN: log.run_id, **log.tags}
    if generation is not None:
        tags[TAG_GENERATION] = str(generation)
    client = log.client
    model = logged_before(client, log.graph.model_ids, artifact)
    if model is not None:  # a driver killed after logging it and before closing its stage run
        lineage.link_outputs(client, runs[:1], model.model_id, step=generation or 0)  # gen, parent: linked
        if lineage.registered_versions(model):  # and after registering it
            return
    else:
        model = lineage.same_model(client, log.experiment_id, artifact, log.pyfunc_loader)  # a cache hit
        if model is None:
            model = lineage.log_model(
                client,
                log.experiment_id,
                runs[0],
                artifact,
                tags,
                log.image_size,
                log.pipeline_name,
                log.pyfunc_loader,
            )
        log.graph.model_ids[artifact.name] = model.model_id
        lineage.link_outputs(client, [*runs, log.parent], model.model_id, step=generation or 0)
    if generation is not None and log.registrations is not None:
        (alias,) = model_aliases(stage_name, generation)
        log.registrations.register(model, runs[0], artifact.name, stage_name, generation, alias)
