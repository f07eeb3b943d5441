"""The training loops: FixMatch (with CReST+ distribution alignment) and plain supervised training.

Each loop is one explicit function that reads top to bottom: sample indices with the generator,
augment (uint8 in, uint8 out), ``to_float``, forward, loss, SGD step, EMA update, report. No trainer
class, no hooks. Every number arrives as an argument or in a frozen settings dataclass.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn
from tqdm import tqdm

from pipelines.augment import to_float
from pipelines.losses import alignment_target, fixmatch_unlabeled_loss, supervised_loss, update_moving_average
from pipelines.schedules import fixmatch_lr, learning_rate

Augment = Callable[[Tensor], Tensor]
Report = Callable[[int, dict[str, float]], None]


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


@dataclass(frozen=True)
class FixMatchSettings:
    """FixMatch / CReST+ hyper-parameters (defaults: the FixMatch paper, ALGORITHMS.md section 2).

    ``temperature`` is the CReST+ alignment temperature ``t`` of this generation (used only when
    ``alignment`` is on); ``alignment_momentum`` is the EMA momentum of ``p_model``.
    """

    steps: int
    batch_size: int = 64
    unlabeled_ratio: int = 7
    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    ema_decay: float = 0.999
    threshold: float = 0.95
    lambda_u: float = 1.0
    alignment: bool = False
    temperature: float = 1.0
    alignment_momentum: float = 0.999
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "unlabeled_ratio": self.unlabeled_ratio >= 1,
            "lr": self.lr > 0,
            "momentum": 0.0 <= self.momentum < 1.0,
            "weight_decay": self.weight_decay >= 0,
            "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "threshold": 0.0 <= self.threshold <= 1.0,
            "lambda_u": self.lambda_u >= 0,
            "temperature": self.temperature >= 0,
            "alignment_momentum": 0.0 <= self.alignment_momentum <= 1.0,
            "label_smoothing": 0.0 <= self.label_smoothing < 1.0,
        }
        bad = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if not checks.get(f.name, True)]
        if bad:
            raise ValueError(
                f"FixMatchSettings: {len(bad)} invalid value(s): {', '.join(bad)}; expected steps/batch_size/"
                "unlabeled_ratio >= 1, lr > 0, momentum/ema_decay in [0, 1), threshold in [0, 1], "
                "lambda_u/weight_decay/temperature >= 0, label_smoothing in [0, 1)"
            )


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


def class_distribution(targets: Tensor, num_classes: int) -> Tensor:
    """Labeled class distribution ``p_labeled`` (float32 ``[C]``) from int class ids or soft rows."""
    if targets.ndim == 1:
        histogram = torch.bincount(targets.long().cpu(), minlength=num_classes).float()
    else:
        histogram = targets.float().sum(dim=0).cpu()
    return histogram / histogram.sum()


def _check_targets(name: str, targets: Tensor, num_items: int, num_classes: int) -> None:
    hard_ok = targets.ndim == 1 and targets.dtype == torch.int64
    soft_ok = targets.ndim == 2 and targets.shape[1] == num_classes and targets.is_floating_point()
    if targets.shape[0] != num_items or not (hard_ok or soft_ok):
        raise ValueError(
            f"{name}: expected {num_items} targets as int64 [N] or float [N, {num_classes}], "
            f"got {targets.dtype} {tuple(targets.shape)}"
        )
    if hard_ok and num_items and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"{name}: expected class ids in [0, {num_classes}), got [{targets.min()}, {targets.max()}]")


def _check_images(name: str, *image_sets: Tensor) -> None:
    for images in image_sets:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(
                f"{name}: expected non-empty uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )


def _check_finite(loss: Tensor, step: int, steps: int, lr: float, loop: str) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"{loop}: loss is {loss.item()} at step {step} of {steps} (lr {lr:.4g}); expected a finite loss. "
            "Lower the learning rate (train.lr) or check the inputs for NaN/inf."
        )


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _progress(steps: int, desc: str, start: int = 0) -> tqdm:
    return tqdm(range(start, steps), desc=desc, disable=not sys.stderr.isatty(), mininterval=1.0,
                initial=start, total=steps)


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


SaveCheckpoint = Callable[[dict, int], None]


def _fixmatch_state(step: int, model: nn.Module, ema: ModelEMA, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator, streams: tuple[IndexStream, IndexStream],
                    p_model: Tensor | None, seen: Tensor, window: Tensor, window_steps: int) -> dict:
    """Everything the loop needs to continue at ``step`` exactly as if it had never stopped."""
    return {
        "step": step, "model": model.state_dict(), "ema": ema.module.state_dict(), "ema_updates": ema.updates,
        "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        "pools": [stream.pool for stream in streams],
        "p_model": p_model.cpu() if p_model is not None else torch.empty(0),
        "samples_seen": seen.cpu(), "window": window.cpu(), "window_steps": window_steps,
    }


def _restore_fixmatch(state: dict, model: nn.Module, ema: ModelEMA, optimizer: torch.optim.Optimizer,
                      generator: torch.Generator, streams: tuple[IndexStream, IndexStream]) -> int:
    """Load a ``_fixmatch_state`` back in place; returns the step to continue from."""
    model.load_state_dict(state["model"])
    ema.module.load_state_dict(state["ema"])
    ema.updates = int(state["ema_updates"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    for stream, pool in zip(streams, state["pools"]):
        stream.pool = pool.clone()
    return int(state["step"])


def train_fixmatch(
    model: nn.Module,
    labeled_images: Tensor,
    labeled_targets: Tensor,
    unlabeled_images: Tensor,
    num_classes: int,
    settings: FixMatchSettings,
    weak_fn: Augment,
    strong_fn: Augment,
    device: str | torch.device,
    generator: torch.Generator,
    report: Report | None = None,
    report_every: int = 50,
    rank: int = 0,
    world_size: int = 1,
    checkpoint_every: int = 0,
    save_checkpoint: SaveCheckpoint | None = None,
    resume: dict | None = None,
) -> nn.Module:
    """FixMatch (optionally CReST+) training; returns the EMA model in eval mode.

    ``loss = l_s + lambda_u * l_u`` with ``l_s = mean CE(y, f(weak(x)))`` over B labeled images and
    ``l_u = 1/(mu B) sum 1[max q >= tau] CE(argmax q, f(strong(u)))``, ``q = softmax(f(weak(u)))``.
    CReST+ (``settings.alignment``): ``q <- normalize(q * p_target / p_model)`` before the threshold,
    ``p_target = normalize(p_labeled ** t)``, ``p_model`` the EMA of the batch means of ``q``.
    One forward over ``cat(weak(x), weak(u), strong(u))``; SGD (Nesterov) with no decay on BN/bias;
    ``lr_k = lr cos(7 pi k / 16 K)``; EMA of weights.

    The global batch is B + 2 mu B whatever the number of workers (ALGORITHMS.md 2): every rank
    draws and augments the same global batch from the same generator and RNG state, and trains on
    its ``rank_slice``; DDP averages the gradients and ``p_model`` is updated with the global mean,
    so the update equals the single-worker update up to BatchNorm's per-rank batch statistics.

    ``save_checkpoint(state, step)`` is called by every rank every ``checkpoint_every`` steps;
    ``resume`` (such a state) continues at its step with identical RNG, sampler and optimizer state.
    ``report(step, {loss, loss_x, loss_u, mask_rate, lr, samples_seen})`` gets the means over the
    last ``report_every`` steps (all ranks), and is called at the last step too.
    """
    _check_images("train_fixmatch", labeled_images, unlabeled_images)
    if report_every < 1 or checkpoint_every < 0:
        raise ValueError(f"train_fixmatch: expected report_every >= 1 and checkpoint_every >= 0, got {report_every}, {checkpoint_every}")
    _check_targets("train_fixmatch", labeled_targets, labeled_images.shape[0], num_classes)
    steps, batch, unlabeled_batch = settings.steps, settings.batch_size, settings.batch_size * settings.unlabeled_ratio
    part_l, part_u = rank_slice(batch, rank, world_size), rank_slice(unlabeled_batch, rank, world_size)
    local_l, local_u = part_l.stop - part_l.start, part_u.stop - part_u.start
    model.to(device).train()
    optimizer = torch.optim.SGD(
        parameter_groups(model, settings.weight_decay),
        lr=settings.lr,
        momentum=settings.momentum,
        nesterov=settings.nesterov,
    )
    ema = ModelEMA(model, settings.ema_decay)
    p_target = p_model = None
    if settings.alignment:
        p_target = alignment_target(class_distribution(labeled_targets, num_classes), settings.temperature).to(device)
        p_model = torch.full((num_classes,), 1.0 / num_classes, device=device)
    streams = (IndexStream(labeled_images.shape[0], batch, generator),
               IndexStream(unlabeled_images.shape[0], unlabeled_batch, generator))
    window, window_steps, seen, start = torch.zeros(4, device=device), 0, torch.zeros((), dtype=torch.int64), 0
    if resume is not None:
        start = _restore_fixmatch(resume, model, ema, optimizer, generator, streams)
        p_model = resume["p_model"].to(device) if p_model is not None else None
        seen = resume["samples_seen"].clone() if rank == 0 else seen
        window, window_steps = resume["window"].to(device), int(resume["window_steps"])
    net = data_parallel(model, world_size)
    progress = _progress(steps, "fixmatch", start)
    for step in progress:
        lr = fixmatch_lr(step, steps, settings.lr)
        _set_lr(optimizer, lr)
        idx_l, idx_u = streams[0].next(), streams[1].next()
        unlabeled = unlabeled_images[idx_u]
        weak_x, weak_u, strong_u = weak_fn(labeled_images[idx_l]), weak_fn(unlabeled), strong_fn(unlabeled)
        images = torch.cat([weak_x[part_l], weak_u[part_u], strong_u[part_u]])
        logits = net(to_float(images.to(device, non_blocking=True)))
        logits_x, logits_weak, logits_strong = logits.split([local_l, local_u, local_u])
        probs_weak = torch.softmax(logits_weak.detach().float(), dim=1)
        if p_model is not None:
            batch_mean = all_reduce_sum(probs_weak.sum(dim=0), world_size) / unlabeled_batch
            p_model = update_moving_average(p_model, batch_mean, settings.alignment_momentum)
        loss_x = supervised_loss(logits_x, labeled_targets[idx_l][part_l].to(device), settings.label_smoothing)
        loss_u, mask = fixmatch_unlabeled_loss(logits_strong.float(), probs_weak, settings.threshold, p_model, p_target)
        loss = loss_x + settings.lambda_u * loss_u
        _check_finite(loss, step + 1, steps, lr, "train_fixmatch")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)
        window += torch.stack([loss.detach(), loss_x.detach(), loss_u.detach(), mask.mean()])
        window_steps += 1
        seen += local_l + local_u
        if (step + 1) % report_every == 0 or step + 1 == steps:
            mean = (all_reduce_sum(window, world_size) / (window_steps * world_size)).tolist()
            metrics = {"loss": mean[0], "loss_x": mean[1], "loss_u": mean[2], "mask_rate": mean[3], "lr": lr,
                       "samples_seen": float(all_reduce_sum(seen, world_size))}
            progress.set_postfix(loss=f"{mean[0]:.3f}", mask=f"{mean[3]:.2f}", refresh=False)
            if report is not None:
                report(step + 1, metrics)
            window.zero_()
            window_steps = 0
        if save_checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            total_seen = all_reduce_sum(seen, world_size)
            save_checkpoint(_fixmatch_state(step + 1, model, ema, optimizer, generator, streams, p_model,
                                            total_seen, window, window_steps), step + 1)
    progress.close()
    return ema.module.eval()


def train_supervised(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    num_classes: int,
    steps: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    schedule: str,
    device: str | torch.device,
    generator: torch.Generator,
    augment_fn: Augment | None,
    label_smoothing: float = 0.0,
    class_weights: Tensor | None = None,
    ema_decay: float | None = None,
    report: Report | None = None,
    soft_targets: Tensor | None = None,
    warmup_steps: int = 0,
    report_every: int = 50,
) -> nn.Module:
    """Supervised training ``min mean CE(y, f(aug(x)))`` with SGD; returns the (EMA) model in eval mode.

    ``targets``: int64 ``[N]`` or a distribution per row ``[N, C]``. ``soft_targets`` (``[N, C]``,
    e.g. a Noisy Student teacher's ``softmax(z/T)``), when given, is the loss target instead of
    ``targets``; ``targets`` then only feeds the reported batch accuracy. ``schedule`` names an entry
    of ``schedules.LR_SCHEDULES`` ("warmup_cosine" uses ``warmup_steps``). ``class_weights`` (``[C]``,
    e.g. ``class_balanced_weights``) weight the CE. ``augment_fn`` (uint8 -> uint8) or None.
    ``report(step, {loss, lr[, accuracy]})`` every ``report_every`` steps and at the last step.
    """
    _check_images("train_supervised", images)
    _check_targets("train_supervised", targets, images.shape[0], num_classes)
    if soft_targets is not None:
        _check_targets("train_supervised (soft_targets)", soft_targets.float(), images.shape[0], num_classes)
    if steps < 1 or batch_size < 1 or lr <= 0 or report_every < 1:
        raise ValueError(
            "train_supervised: expected steps >= 1, batch_size >= 1, lr > 0, report_every >= 1, "
            f"got {steps}, {batch_size}, {lr}, {report_every}"
        )
    learning_rate(schedule, 0, steps, lr, warmup_steps)  # unknown names fail before any work
    loss_targets = targets if soft_targets is None else soft_targets.float()
    weights = None if class_weights is None else class_weights.to(device)
    model.to(device).train()
    optimizer = torch.optim.SGD(parameter_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)
    ema = ModelEMA(model, ema_decay) if ema_decay is not None else None
    stream = random_batches(images.shape[0], batch_size, generator)
    window, window_steps = torch.zeros(2, device=device), 0
    progress = _progress(steps, "supervised")
    for step in progress:
        step_lr = learning_rate(schedule, step, steps, lr, warmup_steps)
        _set_lr(optimizer, step_lr)
        idx = next(stream)
        batch = images[idx] if augment_fn is None else augment_fn(images[idx])
        logits = model(to_float(batch.to(device, non_blocking=True)))
        loss = supervised_loss(logits, loss_targets[idx].to(device), label_smoothing, weights)
        _check_finite(loss, step + 1, steps, step_lr, "train_supervised")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update(model)
        hits = torch.zeros((), device=device)
        if targets.ndim == 1:
            hits = (logits.detach().argmax(dim=1) == targets[idx].to(device)).float().mean()
        window += torch.stack([loss.detach(), hits])
        window_steps += 1
        if (step + 1) % report_every == 0 or step + 1 == steps:
            mean = (window / window_steps).tolist()
            metrics = {"loss": mean[0], "lr": step_lr}
            if targets.ndim == 1:
                metrics["accuracy"] = mean[1]
            if report is not None:
                report(step + 1, metrics)
            window.zero_()
            window_steps = 0
    progress.close()
    return (ema.module if ema is not None else model).eval()
