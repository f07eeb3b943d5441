"""Which stages `init.freeze_backbone_steps` and `init.backbone_lr_scale` act on, as InitSection's docstring says."""

from __future__ import annotations

from pipelines.builders import fitnets, transfer
from tests.unit.pipelines.helpers import config

SETTINGS = {"init.freeze_backbone_steps": 5, "init.backbone_lr_scale": 0.1}


def test_fitnets_distillation_continues_the_hinted_student_whole_whatever_init_says() -> None:
    pipeline = fitnets.build(config(fitnets.FitNetsConfig, **SETTINGS))
    load = pipeline.stage("g01/train").params["init"]
    assert (load.freeze_backbone_steps, load.backbone_lr_scale, load.head) == (0, 1.0, "keep")


def test_transfer_fine_tuning_after_its_pretraining_takes_them() -> None:
    load = transfer.build(config(transfer.TransferConfig, **SETTINGS)).stage("g01/train").params["init"]
    assert (load.freeze_backbone_steps, load.backbone_lr_scale) == (5, 0.1)
