"""The FixMatch loop, with CReST+'s progressive distribution alignment: one explicit function.

The loop reads top to bottom: sample indices with the generator, augment (uint8 in, uint8 out),
``to_float``, forward, loss, SGD step, EMA update, report, checkpoint. No trainer class, no hooks.
Every number arrives as an argument or in ``FixMatchSettings``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipelines.datasets.image_source import ImageSource, as_source
from pipelines.losses import (
    alignment_target,
    current_p_model,
    fixmatch_unlabeled_loss,
    initial_p_model,
    supervised_loss,
    update_moving_average,
)
from pipelines.models import to_float
from pipelines.schedules import fixmatch_lr
from pipelines.training.common import (
    Augment,
    FiniteWatch,
    IndexStream,
    ModelEMA,
    Progress,
    Report,
    SaveCheckpoint,
    all_reduce_sum,
    backbone_scale,
    check_images,
    check_targets,
    data_parallel,
    index_stream,
    rank_slice,
    set_lr,
    sgd,
    show_progress,
)


@dataclass(frozen=True)
class FixMatchSettings:
    """FixMatch / CReST+ hyper-parameters (defaults: the FixMatch paper, docs/ALGORITHMS.md, FixMatch).

    ``temperature`` is the CReST+ alignment temperature ``t`` of this generation (used only when
    ``alignment`` is on); ``alignment_momentum`` is the EMA momentum of ``p_model`` and
    ``p_model_estimate`` how that average starts: "debiased_ema" (at zero, divided by ``1 - m ** k``)
    or "uniform_ema" (at uniform, uncorrected; see ``losses.current_p_model``). Values are
    not checked again here: the config sections they come from (``train`` and ``crest``) bound
    every one when the file is loaded, and the stage builds these settings from them.

    The stage fills every field (pipelines.stages.common.settings_from refuses one it cannot). The
    defaults, for code that builds these settings directly (benchmarks, the GPU check), are the
    config's own (`train`, `crest`, `init`), but for ``alignment``: off, plain FixMatch, where
    `crest.alignment` is on (CReST+); ``temperature`` 1.0 is the first generation's.
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
    p_model_estimate: str = "debiased_ema"
    label_smoothing: float = 0.0
    freeze_backbone_steps: int = 0  # transfer learning (training.common.backbone_scale)
    backbone_lr_scale: float = 1.0


def class_distribution(targets: Tensor, num_classes: int) -> Tensor:
    """Labeled class distribution ``p_labeled`` (float32 ``[C]``) from int class ids or soft rows."""
    if targets.ndim == 1:
        histogram = torch.bincount(targets.long().cpu(), minlength=num_classes).float()
    else:
        histogram = targets.float().sum(dim=0).cpu()
    return histogram / histogram.sum()


def _fixmatch_state(
    step: int,
    model: nn.Module,
    ema: ModelEMA,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    streams: tuple[IndexStream, IndexStream],
    p_model: Tensor | None,
    seen: Tensor,
    window: Tensor,
    window_steps: int,
) -> dict:
    """Everything the loop needs to continue at ``step`` exactly as if it had never stopped."""
    return {
        "step": step,
        "model": model.state_dict(),
        "ema": ema.module.state_dict(),
        "ema_updates": ema.updates,
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "pools": [stream.pool for stream in streams],
        "p_model": p_model.cpu() if p_model is not None else torch.empty(0),
        "samples_seen": seen.cpu(),
        "window": window.cpu(),
        "window_steps": window_steps,
    }


def _restore_fixmatch(
    state: dict,
    model: nn.Module,
    ema: ModelEMA,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    streams: tuple[IndexStream, IndexStream],
) -> int:
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
    labeled_images: Tensor | ImageSource,
    labeled_targets: Tensor,
    unlabeled_images: Tensor | ImageSource,
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
    progress: Progress | None = None,
    p_labeled: Tensor | None = None,
) -> nn.Module:
    """FixMatch (optionally CReST+) training; returns the EMA model in eval mode.

    ``loss = l_s + lambda_u * l_u`` with ``l_s = mean CE(y, f(weak(x)))`` over B labeled images and
    ``l_u = 1/(mu B) sum 1[max q >= tau] CE(argmax q, f(strong(u)))``, ``q = softmax(f(weak(u)))``.
    CReST+ (``settings.alignment``): ``q <- normalize(q * p_target / p_model)`` before the threshold,
    ``p_target = normalize(p_labeled ** t)``, ``p_model`` the bias-corrected EMA of the batch means of ``q``.
    ``p_labeled`` (``[C]``) is the class distribution the target is made from: CReST passes its
    ORIGINAL labeled set's (a fixed labeled distribution; the official TF code uses the analytic
    long-tail gt_p_data, close to these counts), since the set it trains on also holds the rebalanced picks; None takes the distribution of ``labeled_targets``.
    One forward over ``cat(weak(x), weak(u), strong(u))``; SGD (Nesterov) with no decay on BN/bias;
    ``lr_k = lr cos(7 pi k / 16 K)``; EMA of weights.

    The global batch is B + 2 mu B whatever the number of workers (docs/ALGORITHMS.md, FixMatch):
    every rank draws and augments the same global batch from the same generator and RNG state, and
    trains on its ``rank_slice``; DDP averages the gradients and ``p_model`` is updated with the global mean,
    so the update equals the single-worker update up to BatchNorm's per-rank batch statistics.

    ``save_checkpoint(state, step)`` is called by every rank every ``checkpoint_every`` steps;
    ``resume`` (such a state) continues at its step with identical RNG, sampler and optimizer state.
    ``report(step, {loss, loss_x, loss_u, mask_rate, lr, samples_seen})`` gets the means over the
    last ``report_every`` steps (all ranks), and is called at the last step too. ``progress`` hears
    of every step, with the reported loss and mask rate.
    """
    check_images("train_fixmatch", labeled_images, unlabeled_images)
    if report_every < 1 or checkpoint_every < 0:
        raise ValueError(
            f"train_fixmatch: expected report_every >= 1 and checkpoint_every >= 0, got {report_every}, {checkpoint_every}"
        )
    labeled_images, unlabeled_images = as_source(labeled_images), as_source(unlabeled_images)
    check_targets("train_fixmatch", labeled_targets, len(labeled_images), num_classes)
    steps, batch, unlabeled_batch = settings.steps, settings.batch_size, settings.batch_size * settings.unlabeled_ratio
    part_l, part_u = rank_slice(batch, rank, world_size), rank_slice(unlabeled_batch, rank, world_size)
    local_l, local_u = part_l.stop - part_l.start, part_u.stop - part_u.start
    model.to(device).train()
    optimizer = sgd(model, settings.lr, settings.momentum, settings.nesterov, settings.weight_decay)
    ema = ModelEMA(model, settings.ema_decay)
    p_target = p_model = None
    if settings.alignment:
        base = class_distribution(labeled_targets, num_classes) if p_labeled is None else p_labeled.float().cpu()
        if base.shape != (num_classes,):
            raise ValueError(f"train_fixmatch: expected p_labeled of shape ({num_classes},), got {tuple(base.shape)}")
        p_target = alignment_target(base, settings.temperature).to(device)
        p_model = initial_p_model(num_classes, settings.p_model_estimate, device)
    streams = (
        index_stream(labeled_images, batch, generator),
        index_stream(unlabeled_images, unlabeled_batch, generator),
    )
    window, window_steps, seen, start = torch.zeros(4, device=device), 0, torch.zeros((), dtype=torch.int64), 0
    if resume is not None:
        start = _restore_fixmatch(resume, model, ema, optimizer, generator, streams)
        p_model = resume["p_model"].to(device) if p_model is not None else None
        seen = resume["samples_seen"].clone() if rank == 0 else seen
        window, window_steps = resume["window"].to(device), int(resume["window_steps"])
    net = data_parallel(model, world_size)
    watch = FiniteWatch("train_fixmatch", steps, device)
    for step in range(start, steps):
        lr = fixmatch_lr(step, steps, settings.lr)
        set_lr(optimizer, lr, backbone_scale(step, settings.freeze_backbone_steps, settings.backbone_lr_scale))
        idx_l, idx_u = streams[0].next(), streams[1].next()
        labeled = labeled_images.fetch(idx_l, streams[0].pool)  # the pool is what comes next: a source reads ahead
        unlabeled = unlabeled_images.fetch(idx_u, streams[1].pool)
        weak_x, weak_u, strong_u = weak_fn(labeled), weak_fn(unlabeled), strong_fn(unlabeled)
        images = torch.cat([weak_x[part_l], weak_u[part_u], strong_u[part_u]])
        logits = net(to_float(images.to(device, non_blocking=True)))
        logits_x, logits_weak, logits_strong = logits.split([local_l, local_u, local_u])
        probs_weak = torch.softmax(logits_weak.detach().float(), dim=1)
        aligned_by = None  # the p_model alignment divides by this step (None: no alignment)
        if p_model is not None:
            batch_mean = all_reduce_sum(probs_weak.sum(dim=0), world_size) / unlabeled_batch
            p_model = update_moving_average(p_model, batch_mean, settings.alignment_momentum)
            aligned_by = current_p_model(p_model, step + 1, settings.alignment_momentum, settings.p_model_estimate)
        loss_x = supervised_loss(
            logits_x, labeled_targets[idx_l][part_l].to(device, non_blocking=True), settings.label_smoothing
        )
        loss_u, mask = fixmatch_unlabeled_loss(
            logits_strong.float(), probs_weak, settings.threshold, aligned_by, p_target
        )
        loss = loss_x + settings.lambda_u * loss_u
        watch.observe(loss, step + 1, lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)
        window += torch.stack([loss.detach(), loss_x.detach(), loss_u.detach(), mask.mean()])
        window_steps += 1
        seen += local_l + local_u
        if (step + 1) % report_every == 0 or step + 1 == steps:
            watch.check()
            mean = (all_reduce_sum(window, world_size) / (window_steps * world_size)).tolist()
            metrics = {
                "loss": mean[0],
                "loss_x": mean[1],
                "loss_u": mean[2],
                "mask_rate": mean[3],
                "lr": lr,
                "samples_seen": float(all_reduce_sum(seen, world_size)),
            }
            if report is not None:
                report(step + 1, metrics)
            show_progress(progress, step + 1, steps, {"loss": mean[0], "mask_rate": mean[3]})
            window.zero_()
            window_steps = 0
        else:
            show_progress(progress, step + 1, steps)
        if save_checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            watch.check()  # a checkpoint never holds weights a non-finite loss has already moved
            total_seen = all_reduce_sum(seen, world_size)
            save_checkpoint(
                _fixmatch_state(
                    step + 1, model, ema, optimizer, generator, streams, p_model, total_seen, window, window_steps
                ),
                step + 1,
            )
    return ema.module.eval()
