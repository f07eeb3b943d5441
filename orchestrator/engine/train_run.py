"""A data-parallel stage's Ray Train run: the trainer, its workers, their in-stage checkpoints, its storage.

A data-parallel stage with ``workers`` > 1 is coordinated by one Ray task that holds no CPU or
GPU (see ``RayExecutor.submit``); the workers hold them. ``fit_stage`` runs the stage body on
every worker of a ``TorchTrainer``. Ray Train sets up the process group (gloo on CPU, NCCL on
GPU); every rank draws the same global batch and takes its slice, DDP all-reduces the gradients,
and rank 0 stores the outputs. The Train run is named from the stage's fingerprint under the
artifact store, so running the stage again (a retry, ``relay resume``) resumes it from its last
in-stage checkpoint instead of step 0. Sharded stages run on actors instead (``actor_pool``);
which of the two a stage gets is decided by its Ray task (``ray_task.run_on_ray``).

Ray and torch are imported inside functions: the driver imports this module (through the
executor) without paying for either.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from orchestrator.dag import Resources
from orchestrator.engine.artifacts import TRAIN_DIR, ArtifactStore, join_uri, train_run_name
from orchestrator.engine.body import Placement, announce, run_stage_body
from orchestrator.engine.filesystems import filesystem_from_uri
from orchestrator.engine.manifests import Manifest
from orchestrator.engine.task import StageTask
from orchestrator.errors import body_traceback

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"
KEEP_CHECKPOINTS = 2
WORKER_RESTARTS = 2  # Ray Train restarts of the worker group (a killed worker) before the stage fails
# Ray Train's own console lines from this level up: its INFO lines (the resources it requests, its worker group's
# ranks and pids, "Checkpoint successfully created at", "Reporting training result") told of its internals, eight
# a stage, where Relay says each stage's progress; its warnings and errors still show, and Ray's log files keep all.
TRAIN_CONSOLE_LEVEL = "WARNING"


def this_node() -> str:
    """The Ray node id of this process: a manifest records where its stage ran."""
    import ray

    return ray.get_runtime_context().get_node_id()


def train_storage_path(store_uri: str) -> str:
    """Ray Train's storage inside the artifact store, so every node sees the same checkpoints."""
    return join_uri(store_uri, TRAIN_DIR)


def train_storage(store_uri: str) -> tuple[str, pafs.FileSystem | None]:
    """``RunConfig``'s ``storage_path`` and ``storage_filesystem`` for a store: an S3 store's with Relay's timeouts.

    Ray opens a filesystem of its own for a URI, with S3's timeouts unset, so a data-parallel stage's
    checkpoint to a store that stopped answering waited until it answered again, while every other write
    of the run gives up within ``orchestrator.engine.filesystems``' bound. Ray pickles the filesystem to
    its workers and the pickle keeps the timeouts. Other stores are left to Ray, as before.
    """
    storage = train_storage_path(store_uri)
    if not storage.startswith("s3://"):
        return storage, None
    filesystem, path = filesystem_from_uri(storage)
    return path, filesystem


def fit_stage(task: StageTask) -> Manifest:
    """Run a stage on ``workers`` Ray Train workers and return the manifest rank 0 wrote.

    A worker that dies restarts the group from the last checkpoint
    (``FailureConfig``); a failure beyond that raises, and the runner's
    retry policy decides. The Train run's files are removed once the
    stage's outputs are stored: they are only needed to resume.
    """
    stage, resources = task.stage, task.stage.resources
    name, storage = train_run_name(task.fingerprint, stage.name), train_storage_path(task.store_uri)
    trainer = _trainer(task, name)
    logger.info(
        "%s: Ray Train run %s with %d workers (%s CPU, %s GPU each) under %s",
        stage.name,
        name,
        resources.workers,
        resources.num_cpus,
        resources.num_gpus,
        storage,
    )
    announce(task)  # the coordinator opens and closes the line: a restarted group stays in one attempt
    try:
        _fit(trainer)
    finally:
        announce(task, finished=True)
    manifest = _stored_manifest(task, name, storage)
    _remove_run(storage, name)
    return manifest


def _trainer(task: StageTask, name: str) -> Any:
    """A ``TorchTrainer`` running the stage body on each of its workers, its Train run ``name`` in the store."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    stage, resources = task.stage, task.stage.resources
    storage_path, storage_filesystem = train_storage(task.store_uri)
    return TorchTrainer(
        _train_worker,
        train_loop_config={"task": task},  # Ray Train wants a dict here; the task is its one entry
        scaling_config=ScalingConfig(
            num_workers=resources.workers, use_gpu=resources.num_gpus > 0, resources_per_worker=_per_worker(resources)
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=FailureConfig(max_failures=max(WORKER_RESTARTS, stage.retries)),
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            logging_config=LoggingConfig(log_level=TRAIN_CONSOLE_LEVEL),
        ),
    )


def _fit(trainer: Any) -> None:
    """``trainer.fit()``; a failure every failing rank's body raised is that body's exception (``first_body_error``)."""
    from ray.train import WorkerGroupError

    try:
        trainer.fit()
    except WorkerGroupError as exc:
        body_error = first_body_error(exc)
        if body_error is None:
            raise
        raise body_error from None


def _stored_manifest(task: StageTask, name: str, storage: str) -> Manifest:
    """The manifest rank 0 wrote; a Train run that finished without one is an error naming its workers' logs."""
    manifest = ArtifactStore(task.store_uri).read_manifest(task.fingerprint)
    if manifest is None:
        raise RuntimeError(
            f"{task.stage.name}: Ray Train run {name} finished but rank 0 stored no outputs; "
            f"see the worker logs under {storage}/{name}"
        )
    return manifest


def first_body_error(error: Any) -> BaseException | None:
    """The lowest failing rank's own exception from a Ray Train ``WorkerGroupError``, when every failing rank's
    came from the stage body (it carries the body's traceback); else None, and Ray's error stands.

    Why: Ray's error names every rank's traceback in one message, cut to 1,000 characters mid-traceback,
    so a data-parallel stage said ``WorkerGroupError: Training failed due to worker errors`` where one
    worker says ``FloatingPointError: loss is nan``, and the kept traceback had none of the body's frames.
    A rank that died (its process or node) or failed outside the body has no body traceback: that
    failure stays Ray's error, as before (Ray Train has already restarted the group ``max_failures`` times).
    """
    failures = getattr(error, "worker_failures", None) or {}
    ranked = [failures[rank] for rank in sorted(failures)]
    if not ranked or not all(isinstance(f, BaseException) and body_traceback(f) for f in ranked):
        return None
    return ranked[0]


def _per_worker(resources: Resources) -> dict[str, float]:
    per_worker = {"CPU": resources.num_cpus, **dict(resources.custom)}
    if resources.num_gpus > 0:
        per_worker["GPU"] = resources.num_gpus
    return per_worker


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the stage body as rank ``r`` of ``world_size``."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank = context.get_world_rank()
    placement = Placement(
        rank=rank,
        world_size=context.get_world_size(),
        device=str(ray.train.torch.get_device()),
        checkpointer=TrainCheckpointer(rank),
        node=this_node(),
    )
    run_stage_body(config["task"], placement)


@dataclass
class TrainCheckpointer:
    """In-stage checkpoints through Ray Train: rank 0's state is reported, every rank loads it.

    ``ray.train.report`` is collective, so every rank calls ``save`` at the
    same step; only rank 0 attaches the checkpoint.
    """

    rank: int

    def save(self, state: dict[str, Any], step: int) -> None:
        import ray.train
        import torch

        with tempfile.TemporaryDirectory(prefix="relay-ckpt-") as directory:
            checkpoint = None
            if self.rank == 0:
                torch.save(state, Path(directory) / CHECKPOINT_FILE)
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report({"step": step}, checkpoint=checkpoint)

    def load(self) -> dict[str, Any] | None:
        import ray.train
        import torch

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)

    def save_part(self, index: int, data: bytes) -> None:
        """Keeps nothing: a data-parallel stage resumes from its state (``save``); parts are for labeling stages."""

    def load_part(self, index: int) -> bytes | None:
        return None


def _remove_run(storage: str, name: str) -> None:
    """Delete a finished Train run's checkpoints; failing to is only worth a warning."""
    try:
        if "://" in storage:
            fs, root = filesystem_from_uri(storage)
        else:
            fs, root = pafs.LocalFileSystem(), storage
        fs.delete_dir(f"{root.rstrip('/')}/{name}")
    except (FileNotFoundError, OSError) as exc:
        logger.warning("could not remove the finished Ray Train run %s under %s: %s", name, storage, exc)
