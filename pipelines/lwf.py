"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017): learn a new task, keep the old one's outputs.

Before training, the old network's outputs ``y_o`` on the NEW task's images are recorded. The
network then gets a second classifier (the new head) and trains shared layers, old head and new
head on

    L = CE(y_n, softmax(z_new)) + lambda_o * KL(softmax(y_o / T) || softmax(z_old / T))

(``lambda_o`` = 1, ``T`` = 2 in the paper). The paper writes the old-task term as the cross-entropy
of the two softened distributions; it differs from the KL by the recorded distribution's entropy,
a constant, so the gradients are the same. There is no ``T**2`` on that term (Hinton's
distillation has one, the paper's loss does not; ``lwf_loss`` says why). The two baselines are
fine-tuning (``lambda_o`` = 0 and the old head frozen: the shared layers drift and the old task is
forgotten) and joint training on both tasks' data (the upper bound, which needs the old data LwF
does without).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines.losses import softened_kl
from pipelines.transfer import HEAD


def lwf_loss(
    new_logits: Tensor,
    new_targets: Tensor,
    old_logits: Tensor,
    recorded_old_logits: Tensor,
    lambda_old: float,
    temperature: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(L, CE_new, KD_old)`` of one batch; ``KD_old = KL(softmax(y_o/T) || softmax(z_old/T))``, batch mean.

    No ``T^2`` (Hinton's distillation has one): Li & Hoiem's old-task term is the softened
    cross-entropy as it is. With a ``T^2``, ``lambda_o = 1`` weighed the old task 4 times the
    paper's at ``T = 2``, and LwF kept less of it than plain fine-tuning (README, the methods table).
    """
    if lambda_old < 0:
        raise ValueError(f"lwf_loss: expected lambda_old >= 0, got {lambda_old}; the paper uses 1")
    if old_logits.shape != recorded_old_logits.shape:
        raise ValueError(
            f"lwf_loss: expected old-head logits and recorded outputs of one shape, got "
            f"{tuple(old_logits.shape)} and {tuple(recorded_old_logits.shape)}"
        )
    ce = F.cross_entropy(new_logits, new_targets)
    kd = softened_kl(old_logits, recorded_old_logits.to(old_logits.dtype), temperature, "lwf_loss")
    return ce + lambda_old * kd, ce, kd


class TwoHeads(nn.Module):
    """The old network with a second classifier: ``forward`` returns ``[old logits | new logits]``.

    The old classifier (``fc`` of a registered model) moves to ``old_head`` and a new
    ``nn.Linear`` of ``new_classes`` outputs reads the same features. ``merged`` folds both heads
    back into one ``fc`` of ``old + new`` outputs, so the result is a plain registered model again
    (a Relay checkpoint any stage can load) whose first ``old_classes`` outputs are the old task.
    """

    def __init__(self, network: nn.Module, new_classes: int, head: str = HEAD) -> None:
        super().__init__()
        old = getattr(network, head)
        if not isinstance(old, nn.Linear):
            raise ValueError(f"TwoHeads: expected the classifier {head!r} to be nn.Linear, got {type(old).__name__}")
        self.head_name = head
        self.body = copy.deepcopy(network)
        setattr(self.body, head, nn.Identity())
        self.old_head = copy.deepcopy(old)
        self.new_head = nn.Linear(old.in_features, new_classes)
        self.old_classes = old.out_features

    def forward(self, x: Tensor) -> Tensor:
        features = self.body(x)
        return torch.cat([self.old_head(features), self.new_head(features)], dim=1)

    def merged(self) -> nn.Module:
        """A copy of the network whose ``fc`` holds the old rows, then the new ones (eval mode)."""
        network = copy.deepcopy(self.body)
        fc = nn.Linear(self.old_head.in_features, self.old_classes + self.new_head.out_features)
        with torch.no_grad():
            fc.weight.copy_(torch.cat([self.old_head.weight, self.new_head.weight]))
            fc.bias.copy_(torch.cat([self.old_head.bias, self.new_head.bias]))
        setattr(network, self.head_name, fc)
        return network.eval()
