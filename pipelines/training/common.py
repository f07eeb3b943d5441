"""What every training loop shares: the EMA model, SGD groups, index streams, input checks, data parallelism.

Each loop (``training.fixmatch``, ``training.student``) stays one explicit function that reads top
to bottom; this module holds only the pieces both loops use identically, so a fix to one (the
EMA warm-up, the no-decay groups, the NaN message) reaches both.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from pipelines.datasets.image_source import ImageSource

Augment = Callable[[Tensor], Tensor]
Report = Callable[[int, dict[str, float]], None]
SaveCheckpoint = Callable[[dict, int], None]
# progress(done, total, unit, metrics): a stage passes its ctx.progress, which sends at most once a second
Progress = Callable[[float, float | None, str, Mapping[str, float] | None], None]

# The param-group key set_lr marks a frozen backbone group with, and the optimizers it has hooked.
FROZEN = "frozen"
_guarded_optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()


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
        # One fused kernel per dtype instead of one per tensor (a WRN-28-2 has ~90 parameters and ~90 buffers):
        # on a GPU each launch costs about as much as the arithmetic it does.
        if self._params:
            torch._foreach_lerp_(self._params, [p.detach() for p in live_params], 1.0 - decay)
        if self._buffers:
            torch._foreach_copy_(self._buffers, live_buffers)
        self.updates += 1


def parameter_groups(model: nn.Module, weight_decay: float, head: str = "fc") -> list[dict]:
    """SGD groups: weight decay on weight matrices and conv kernels only; the backbone apart from the head.

    BatchNorm weights/biases and all biases (every parameter with ``ndim <= 1``) get no decay, as in
    FixMatch. Parameters outside ``head`` (the classifier, ``fc`` in every registered model) are
    marked ``backbone`` so that ``set_lr`` can freeze them or give them a lower rate (transfer
    learning). Empty groups are left out (torch rejects an optimizer with no parameters at all).
    """
    groups = []
    for backbone in (True, False):
        named = [
            p
            for name, p in model.named_parameters()
            if p.requires_grad and (name == head or name.startswith(head + ".")) != backbone
        ]
        groups.append({"params": [p for p in named if p.ndim > 1], "weight_decay": weight_decay, "backbone": backbone})
        groups.append({"params": [p for p in named if p.ndim <= 1], "weight_decay": 0.0, "backbone": backbone})
    return [group for group in groups if group["params"]]


def sgd(
    model: nn.Module, lr: float, momentum: float, nesterov: bool, weight_decay: float, head: str = "fc"
) -> torch.optim.SGD:
    """SGD over ``parameter_groups``: the optimizer every Relay training loop uses (a fresh one per generation)."""
    groups = parameter_groups(model, weight_decay, head)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


def backbone_scale(step: int, freeze_steps: int, lr_scale: float) -> float:
    """The backbone's share of the learning rate at ``step``: 0 while frozen, then ``lr_scale`` (transfer learning)."""
    return 0.0 if step < freeze_steps else lr_scale


class IndexStream:
    """Index batches from shuffled epochs, with the leftover pool exposed so a checkpoint can resume it.

    The sequence is a pure function of the generator: with the generator's
    state and ``pool`` restored, the stream continues exactly where it was.
    ``pool`` is also what the stream will hand out next, which a streamed
    ImageSource reads ahead along.

    An epoch is a uniform shuffle (``randperm``) when ``window`` is 0 or covers
    every item. A larger set is shuffled in two levels, so that only ``window``
    items are live at a time: blocks of ``block`` consecutive items in random
    order, cut into windows of ``window // block`` blocks, each window's items
    shuffled (the shuffle buffer of WebDataset and tf.data, at block granularity).
    Every item still comes once per epoch.
    """

    def __init__(
        self, num_items: int, batch_size: int, generator: torch.Generator, window: int = 0, block: int = 1
    ) -> None:
        if num_items < 1:
            raise ValueError(f"random_batches: expected at least one item to sample, got {num_items}")
        self.num_items, self.batch_size, self.generator = num_items, batch_size, generator
        self.window, self.block = window, max(1, block)
        self.pool = torch.empty(0, dtype=torch.int64)

    def next(self) -> Tensor:
        """The next int64 batch (each item once per epoch, epochs concatenated)."""
        while self.pool.numel() < self.batch_size:
            self.pool = torch.cat([self.pool, self._epoch()])
        batch, self.pool = self.pool[: self.batch_size], self.pool[self.batch_size :]
        return batch

    def _epoch(self) -> Tensor:
        if not self.window or self.num_items <= self.window:
            return torch.randperm(self.num_items, generator=self.generator)
        blocks = torch.randperm(-(-self.num_items // self.block), generator=self.generator)
        per_window = max(1, self.window // self.block)
        offsets = torch.arange(self.block)
        windows = []
        for start in range(0, len(blocks), per_window):
            items = (blocks[start : start + per_window, None] * self.block + offsets).reshape(-1)
            items = items[items < self.num_items]
            windows.append(items[torch.randperm(len(items), generator=self.generator)])
        return torch.cat(windows)


def index_stream(images: ImageSource, batch_size: int, generator: torch.Generator) -> IndexStream:
    """The index stream over ``images`` with the source's shuffle window: the same batches from any source."""
    return IndexStream(len(images), batch_size, generator, images.window, images.block)


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


def check_images(loop: str, *image_sets: Tensor | ImageSource, what: str = "") -> None:
    """Every set non-empty uint8 ``[N, C, H, W]`` (the loops augment uint8 and convert once, in ``to_float``).

    A tensor is checked here; an ImageSource holds uint8 images of one shape by construction.
    """
    for images in image_sets:
        if isinstance(images, Tensor):
            bad, got = (
                images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0,
                f"{images.dtype} {tuple(images.shape)}",
            )
        else:
            bad, got = len(images) == 0, f"{len(images)} images"
        if bad:
            raise ValueError(f"{loop}: expected non-empty uint8 {what}images [N, C, H, W], got {got}")


def check_finite(loss: Tensor, step: int, steps: int, lr: float, loop: str) -> None:
    """Stop at the first non-finite loss, naming the step and what to change (NaN would otherwise train on silently)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(non_finite_message(loop, float(loss.item()), step, steps, lr))


def non_finite_message(loop: str, value: float, step: int, steps: int, lr: float) -> str:
    """The one NaN/inf message of every loop, whether the loss was checked at once or at a window's end."""
    return (
        f"{loop}: loss is {value} at step {step} of {steps} (lr {lr:.4g}); expected a finite loss. "
        "Lower the learning rate (train.lr) or check the inputs for NaN/inf."
    )


class FiniteWatch:
    """``check_finite`` for a loop on any device: eager on the CPU, read once per window on an accelerator.

    Asking whether a CUDA loss is finite makes the host wait for the device every step, so the CPU
    cannot prepare (fetch, augment) the next batch while the GPU computes this one. On an
    accelerator the first non-finite step and its loss are therefore kept on the device and read by
    ``check()``, which the loops call where they read the device anyway (a report window, a
    checkpoint, the end): the error names the same step, a few steps later. On the CPU there is
    nothing to overlap, so every step is checked at once, as before.
    """

    def __init__(self, loop: str, steps: int, device: str | torch.device, eager: bool | None = None) -> None:
        self.loop, self.steps = loop, steps
        self.eager = torch.device(device).type == "cpu" if eager is None else eager
        self.first_bad = torch.zeros((), dtype=torch.int64, device=device)  # 1-based step; 0: none yet
        self.bad_loss = torch.zeros((), device=device)
        self.lrs: dict[int, float] = {}  # the learning rate of each step not yet checked

    def observe(self, loss: Tensor, step: int, lr: float) -> None:
        """Note ``loss`` of 1-based ``step``; on the CPU raise now if it is not finite."""
        if self.eager:
            check_finite(loss, step, self.steps, lr, self.loop)
            return
        loss = loss.detach().float()
        first = ~torch.isfinite(loss) & (self.first_bad == 0)
        self.first_bad = torch.where(first, step, self.first_bad)
        self.bad_loss = torch.where(first, loss, self.bad_loss)
        self.lrs[step] = lr

    def check(self) -> None:
        """Raise FloatingPointError naming the first non-finite step seen so far (one device read)."""
        if self.eager:
            return
        step = int(self.first_bad.item())
        if step:
            raise FloatingPointError(
                non_finite_message(self.loop, float(self.bad_loss.item()), step, self.steps, self.lrs[step])
            )
        self.lrs.clear()


def set_lr(optimizer: torch.optim.Optimizer, lr: float, backbone: float = 1.0) -> None:
    """The learning rate of this step on every parameter group, times ``backbone`` on the backbone's groups.

    Schedules are per step, not per epoch. A backbone share of 0 freezes the backbone exactly as
    ``requires_grad=False`` would: a rate of 0 alone is not enough, because SGD still folds each
    step's gradient and weight decay into the momentum buffer, and the first unfrozen step would
    then move the backbone by all the frozen steps' gradients (the random head's among them). So
    the frozen groups are marked, and the optimizer drops their gradients before each step
    (``drop_frozen_grads``), which makes it skip those parameters: no update, no weight decay, no
    momentum. BatchNorm statistics still follow the data, as they do with ``requires_grad=False``.
    """
    for group in optimizer.param_groups:
        in_backbone = group.get("backbone", False)
        group["lr"] = lr * backbone if in_backbone else lr
        group[FROZEN] = in_backbone and backbone == 0.0
    if optimizer not in _guarded_optimizers and any(group[FROZEN] for group in optimizer.param_groups):
        optimizer.register_step_pre_hook(drop_frozen_grads)
        _guarded_optimizers.add(optimizer)


def drop_frozen_grads(optimizer: torch.optim.Optimizer, args: tuple = (), kwargs: Mapping | None = None) -> None:
    """Forget the gradients of the groups ``set_lr`` froze (a step pre-hook), so the optimizer leaves them alone.

    Dropped after ``backward`` rather than never computed: switching ``requires_grad`` on a model
    that DistributedDataParallel wraps would break its gradient reduction.
    """
    for group in optimizer.param_groups:
        if group.get(FROZEN, False):
            for param in group["params"]:
                param.grad = None


def show_progress(progress: Progress | None, step: int, steps: int, metrics: Mapping[str, float] | None = None) -> None:
    """Tell ``progress`` (if any) that ``step`` of ``steps`` are done; the loops call it every step.

    Every step, because the receiver throttles (StageContext.progress sends at most once a
    second), and the last step always gets through.
    """
    if progress is not None:
        progress(step, steps, "steps", metrics)


class LossWindow:
    """Means of the losses over the last steps, handed to ``report`` every ``report_every`` steps and at the last.

    The losses stay on the device until a report (one sync per window, not per step). ``progress``
    hears of every step, with the first loss's latest window mean once there is one.
    """

    def __init__(
        self,
        names: tuple[str, ...],
        steps: int,
        report: Report | None,
        report_every: int,
        progress: Progress | None = None,
        watch: FiniteWatch | None = None,
    ):
        self.names, self.steps, self.report, self.report_every, self.progress = (
            names,
            steps,
            report,
            report_every,
            progress,
        )
        self.watch = watch  # checked when a window closes, before its means are read and reported
        self.total: Tensor | None = None
        self.count = 0

    def add(self, step: int, losses: Tensor, lr: float) -> None:
        """Count this step's losses (a ``[len(names)]`` tensor); report their means when a window closes."""
        self.total = losses.detach() if self.total is None else self.total + losses.detach()
        self.count += 1
        if (step + 1) % self.report_every and step + 1 != self.steps:
            show_progress(self.progress, step + 1, self.steps)
            return
        if self.watch is not None:
            self.watch.check()
        means = dict(zip(self.names, (self.total / self.count).tolist()))
        show_progress(self.progress, step + 1, self.steps, {self.names[0]: means[self.names[0]]})
        if self.report is not None:
            self.report(step + 1, {**means, "lr": lr})
        self.total, self.count = None, 0


def minimize(
    loss_of: Callable[[Tensor], Tensor],
    images: Tensor,
    optimizer: torch.optim.Optimizer,
    steps: int,
    batch_size: int,
    lr_at: Callable[[int], float],
    generator: torch.Generator,
    loop: str,
    report: Report | None = None,
    report_every: int = 50,
    progress: Progress | None = None,
) -> None:
    """SGD on one loss of uint8 image batches: the loop of the stages that need no labels (pretext, FitNets' hints).

    Each step draws ``batch_size`` images (epochs of a random order), sets ``lr_at(step)``, and
    steps the optimizer on ``loss_of(batch)``; ``report(step, {loss, lr})`` gets window means and
    ``progress`` hears of every step.
    """
    stream = random_batches(images.shape[0], batch_size, generator)
    watch = FiniteWatch(loop, steps, optimizer.param_groups[0]["params"][0].device)
    window = LossWindow(("loss",), steps, report, report_every, progress, watch)
    for step in range(steps):
        lr = lr_at(step)
        set_lr(optimizer, lr)
        loss = loss_of(images[next(stream)])
        watch.observe(loss, step + 1, lr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.add(step, loss.reshape(1), lr)


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
