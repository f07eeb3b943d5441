"""What every training loop shares: the EMA model, SGD groups, index streams, input checks, data parallelism.

Each loop (``training.fixmatch``, ``training.student``) stays one explicit function that reads top
to bottom; this module holds only the pieces both loops use identically, so a fix to one (the
EMA warm-up, the no-decay groups, the NaN message) reaches both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

Augment = Callable[[Tensor], Tensor]
Report = Callable[[int, dict[str, float]], None]
SaveCheckpoint = Callable[[dict, int], None]
# progress(done, total, unit, metrics): a stage passes its ctx.progress, which sends at most once a second
Progress = Callable[[float, float | None, str, Mapping[str, float] | None], None]


class ModelEMA:
    """Exponential moving average of a model: ``theta_ema <- d * theta_ema + (1 - d) * theta``.

    Parameters are averaged; buffers (BatchNorm running mean/var, num_batches_tracked) are COPIED
    from the live model, so the EMA model's BN statistics match what the live model has seen.
    FixMatch evaluates and pseudo-labels with this model (decay 0.999).

    ``warmup=True`` uses ``d_n = min(d, (1 + n) / (10 + n))`` at update ``n`` (the ``num_updates``
    option of TensorFlow's ExponentialMovingAverage): without it, a run of a few hundred steps at
    d = 0.999 would return weights that are still mostly the random initialisation. Over FixMatch's
    2^16 steps the difference vanishes; pass ``warmup=False`` for the plain update.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ModelEMA: expected decay in [0, 1), got {decay}; FixMatch uses 0.999")
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self._params = list(self.module.parameters())
        self._buffers = list(self.module.buffers())

    def current_decay(self) -> float:
        """The decay the next ``update`` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the averaged parameters toward ``model``'s and copy its buffers."""
        decay = self.current_decay()
        live_params, live_buffers = list(model.parameters()), list(model.buffers())
        if len(self._params) != len(live_params) or len(self._buffers) != len(live_buffers):
            raise ValueError("ModelEMA.update: expected the model the EMA was created from (parameter lists differ)")
        for ema_p, p in zip(self._params, live_params):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self._buffers, live_buffers):
            ema_b.copy_(b)
        self.updates += 1


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """SGD groups: weight decay on weight matrices and conv kernels only.

    BatchNorm weights/biases and all biases (every parameter with ``ndim <= 1``) get no decay, as in
    FixMatch. Empty groups are left out (torch rejects an optimizer with no parameters at all).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def sgd(model: nn.Module, lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.SGD:
    """SGD over ``parameter_groups``: the optimizer every Relay training loop uses (a fresh one per generation)."""
    return torch.optim.SGD(parameter_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)


class IndexStream:
    """Index batches from shuffled epochs, with the leftover pool exposed so a checkpoint can resume it.

    The sequence is a pure function of the generator: with the generator's
    state and ``pool`` restored, the stream continues exactly where it was.
    """

    def __init__(self, num_items: int, batch_size: int, generator: torch.Generator) -> None:
        if num_items < 1:
            raise ValueError(f"random_batches: expected at least one item to sample, got {num_items}")
        self.num_items, self.batch_size, self.generator = num_items, batch_size, generator
        self.pool = torch.empty(0, dtype=torch.int64)

    def next(self) -> Tensor:
        """The next int64 batch (each item once per epoch, epochs concatenated)."""
        while self.pool.numel() < self.batch_size:
            self.pool = torch.cat([self.pool, torch.randperm(self.num_items, generator=self.generator)])
        batch, self.pool = self.pool[: self.batch_size], self.pool[self.batch_size :]
        return batch


def random_batches(num_items: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless int64 index batches from shuffled epochs (each item once per epoch, epochs concatenated)."""
    stream = IndexStream(num_items, batch_size, generator)
    while True:
        yield stream.next()


def check_targets(loop: str, targets: Tensor, num_items: int, num_classes: int, what: str = "") -> None:
    """Hard int64 ``[N]`` class ids in ``[0, num_classes)`` or float ``[N, C]`` rows; ValueError naming ``loop`` otherwise."""
    hard_ok = targets.ndim == 1 and targets.dtype == torch.int64
    soft_ok = targets.ndim == 2 and targets.shape[1] == num_classes and targets.is_floating_point()
    if targets.shape[0] != num_items or not (hard_ok or soft_ok):
        raise ValueError(
            f"{loop}: expected {num_items} {what}targets as int64 [N] or float [N, {num_classes}], "
            f"got {targets.dtype} {tuple(targets.shape)}"
        )
    if hard_ok and num_items and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"{loop}: expected class ids in [0, {num_classes}), got [{targets.min()}, {targets.max()}]")


def check_images(loop: str, *image_sets: Tensor, what: str = "") -> None:
    """Every set non-empty uint8 ``[N, C, H, W]`` (the loops augment uint8 and convert once, in ``to_float``)."""
    for images in image_sets:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(
                f"{loop}: expected non-empty uint8 {what}images [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )


def check_finite(loss: Tensor, step: int, steps: int, lr: float, loop: str) -> None:
    """Stop at the first non-finite loss, naming the step and what to change (NaN would otherwise train on silently)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{loop}: loss is {loss.item()} at step {step} of {steps} (lr {lr:.4g}); expected a finite loss. "
            "Lower the learning rate (train.lr) or check the inputs for NaN/inf."
        )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The learning rate of this step, on every parameter group (schedules are per step, not per epoch)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def show_progress(progress: Progress | None, step: int, steps: int, metrics: Mapping[str, float] | None = None) -> None:
    """Tell ``progress`` (if any) that ``step`` of ``steps`` are done; the loops call it every step.

    Every step, because the receiver throttles (StageContext.progress sends at most once a
    second), and the last step always gets through.
    """
    if progress is not None:
        progress(step, steps, "steps", metrics)


# --- data parallelism: every rank draws the same global batch and trains on its slice ------


def rank_slice(global_size: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch that ``rank`` trains on; the global batch must split evenly.

    An uneven split would weight ranks' gradients unequally under DDP's mean,
    so the update would no longer equal the single-worker one.
    """
    if global_size % world_size:
        raise ValueError(
            f"a global batch of {global_size} does not split evenly over {world_size} workers; "
            f"set train.batch_size so that batch_size and batch_size * unlabeled_ratio are multiples of {world_size}"
        )
    local = global_size // world_size
    return slice(rank * local, (rank + 1) * local)


def all_reduce_sum(value: Tensor, world_size: int) -> Tensor:
    """Sum over the data-parallel ranks (torch.distributed, set up by the caller); identity alone."""
    if world_size == 1:
        return value
    total = value.clone()
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total


def data_parallel(model: nn.Module, world_size: int) -> nn.Module:
    """DDP around ``model`` when there are several ranks: gradients are averaged in ``backward``."""
    if world_size == 1:
        return model
    if not torch.distributed.is_initialized():
        raise RuntimeError(
            f"world_size is {world_size} but no torch.distributed process group exists; run the stage with "
            "workers > 1 on the Ray executor (Ray Train sets the group up) or with workers=1"
        )
    return nn.parallel.DistributedDataParallel(model)
