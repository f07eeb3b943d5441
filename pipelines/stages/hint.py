"""FitNets' hint stage (`g01/hint`): the student learns the teacher's hint layer up to its guided layer.

The output is the whole student network (layers past the guided one as initialised), which the
student's KD stage then loads with its classifier (`pretrained` role, head kept): FitNets' stage 2
(pipelines.fitnets, docs/ALGORITHMS.md, FitNets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.dag import StageContext, StageResult
from pipelines.models import create_model
from pipelines.stages.augmentation import input_noise
from pipelines.stages.common import (
    artifact,
    load_model,
    model_checkpoint,
    num_classes_of,
    output_name,
    settings_from,
    stage_generator,
    subset_tensors,
)
from pipelines.training.hint import HintSettings, train_hint


def hint_settings(params: Mapping[str, Any]) -> HintSettings:
    """The hint stage's loop settings: the student's `train` section at `fitnets.hint_steps`."""
    return settings_from(HintSettings, params["train"], steps=params["fitnets"].hint_steps)


def train_hints(ctx: StageContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> StageResult:
    """Train the student's lower layers and a regressor on the hint loss; store the whole student."""
    generator = stage_generator(ctx)
    data, network, train, fitnets = params["data"], params["model"], params["train"], params["fitnets"]
    _, images, _ = subset_tensors(data, artifact(inputs, params, "split"), "labeled")
    num_classes, in_channels = num_classes_of(data), int(images.shape[1])
    teacher = load_model(artifact(inputs, params, "teacher"), ctx.device)
    student = create_model(network.name, num_classes, in_channels, network.dropout, network.stochastic_depth)
    trained = train_hint(
        student,
        teacher,
        fitnets.guided_layer,
        fitnets.hint_layer,
        images,
        hint_settings(params),
        input_noise(train.augment, params["augment"], data),
        ctx.device,
        generator,
        report=ctx.report,
        report_every=train.report_every,
        progress=ctx.progress,
    )
    checkpoint = model_checkpoint(trained, network.name, num_classes, in_channels, network.dropout, images.shape[2:])
    metrics = {"steps": float(fitnets.hint_steps)}
    if ctx.series:
        metrics.update(ctx.series[-1][1])
    return StageResult(outputs={output_name(params, "hinted"): checkpoint}, metrics=metrics)
