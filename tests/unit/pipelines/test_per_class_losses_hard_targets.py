"""``train.loss: focal`` or ``sigmoid`` trains on hard targets unless ``train.label_smoothing`` is set.

The supervised pipelines' 0.1 smoothing suits softmax CE; applied to the per-class sigmoid targets
(0.91 and 0.01) it left a confident right prediction a loss and pushed its logit down.
"""

from __future__ import annotations

import pytest
import torch

from orchestrator.config import validate_config
from pipelines.builders.knowledge_evolution import KnowledgeEvolutionConfig
from pipelines.builders.noisy_student import NoisyTrainSection
from pipelines.class_balanced import class_balanced_loss
from pipelines.schema import SupervisedTrainSection


@pytest.mark.parametrize("section", [SupervisedTrainSection, NoisyTrainSection])
@pytest.mark.parametrize("loss", ["focal", "sigmoid"])
def test_a_per_class_loss_without_smoothing_set_uses_hard_targets(section, loss) -> None:
    assert section.model_validate({"loss": loss}).label_smoothing == 0.0
    assert section.model_validate({"loss": loss, "label_smoothing": 0.1}).label_smoothing == 0.1  # asked for


def test_softmax_ce_keeps_its_smoothing_default() -> None:
    assert SupervisedTrainSection.model_validate({}).label_smoothing == 0.1
    assert SupervisedTrainSection.model_validate({"loss": "ce"}).label_smoothing == 0.1


def test_a_confident_right_prediction_costs_nothing_under_the_focal_default() -> None:
    config = validate_config(KnowledgeEvolutionConfig, {"train": {"loss": "focal", "focal_gamma": 2.0}})
    logits, targets = torch.tensor([[8.0, -8.0, -8.0]]), torch.tensor([0])
    loss = class_balanced_loss(logits, targets, "focal", gamma=2.0, label_smoothing=config.train.label_smoothing)
    assert float(loss) < 1e-6
