"""Every field of a training loop's settings comes from the config, so a renamed config field fails here.

``settings_from`` copies a config section into a loop's settings dataclass by field name, and the
dataclasses have defaults of their own: a config field renamed in the schema used to hand the loop
that default instead of the user's value, silently. It now refuses a field with no source; the
tests below build every registered pipeline and the settings of each of its training stages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from pydantic import BaseModel

from pipelines.builders.crest import CrestSection
from pipelines.builders.distill import DistillSection
from pipelines.builders.fitnets import FitNetsSection
from pipelines.builders.lwf import LwfSection, LwfTrainSection
from pipelines.builders.noisy_student import NoisyStudentSection
from pipelines.registry import PIPELINES
from pipelines.schema import InitSection, PretextSection, SupervisedTrainSection, TrainSection
from pipelines.stages import domain, hint, lwf, pretext, refs, train, train_network
from pipelines.stages.common import settings_from
from pipelines.training.fixmatch import FixMatchSettings
from pipelines.training.hint import HintSettings
from pipelines.training.lwf import LwfSettings
from pipelines.training.pretext import PretextSettings
from pipelines.training.student import StudentSettings
from tests.unit.pipelines.helpers import config


class _Renamed(BaseModel):
    """A `train` section whose `lr` was renamed `learning_rate`."""

    steps: int = 5
    learning_rate: float = 0.123


@dataclasses.dataclass(frozen=True)
class _Loop:
    steps: int
    lr: float = 0.05


def test_a_settings_field_no_section_field_and_no_extra_gives_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"_Loop: no value for lr: _Renamed declares no field of that name") as info:
        settings_from(_Loop, _Renamed())
    assert "pass it to settings_from" in str(info.value), "the message says where the value would come from"


def test_a_renamed_field_reaches_the_loop_through_extra() -> None:
    section = _Renamed()
    assert settings_from(_Loop, section, lr=section.learning_rate) == _Loop(steps=5, lr=0.123)


# The stage bodies that build a loop's settings, and how each does it from its params.
SETTINGS_OF: dict[Any, Callable[[Mapping[str, Any]], Any]] = {
    refs.train_generation: lambda p: train.fixmatch_settings(p["train"], p["crest"], p.get("init")),
    refs.train_network: lambda p: train_network.student_settings(
        p["train"], p.get("noisy"), p.get("distill"), p.get("init")
    ),
    refs.learn_without_forgetting: lwf.lwf_settings,
    refs.train_hints: hint.hint_settings,
    refs.pretrain_on_source: domain.source_settings,
    refs.pretrain_pretext: pretext.pretext_settings,
}
USER_LR, USER_PRETEXT_LR = 0.0123, 0.0456  # no section's default: the user's value must reach the loop


def _trained_stages(name: str, **overrides: object) -> list[Any]:
    spec = PIPELINES[name]
    cfg = config(spec.config_model, **{"train.lr": USER_LR, **overrides})
    return [stage for stage in spec.build(cfg).stages if stage.fn in SETTINGS_OF]


@pytest.mark.parametrize("pretrained", [False, True], ids=["from-scratch", "from-pretext-weights"])
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_training_stage_builds_its_settings_from_the_users_config(name: str, pretrained: bool) -> None:
    overrides = {"pretext.method": "rotnet", "pretext.lr": USER_PRETEXT_LR} if pretrained else {}
    stages = _trained_stages(name, **overrides)
    assert stages, f"{name}: no training stage found; a new stage body that trains belongs in SETTINGS_OF"
    for stage in stages:
        settings = SETTINGS_OF[stage.fn](stage.params)
        expected = USER_PRETEXT_LR if stage.fn == refs.pretrain_pretext else USER_LR
        assert settings.lr == expected, f"{name}: {stage.name} trains at {settings.lr}, not the config's {expected}"


def test_every_stage_body_that_builds_settings_is_in_some_pipeline() -> None:
    built = {
        stage.fn
        for name in PIPELINES
        for stage in [*_trained_stages(name), *_trained_stages(name, **{"pretext.method": "rotnet"})]
    }
    assert built == set(SETTINGS_OF)


# Where each settings dataclass's fields come from: a section, and {settings field: section field} for the fields
# it gives, or None for every field it declares under the settings' name. ON_PURPOSE: the defaults that differ from
# the config's on purpose, each said in its dataclass's docstring.
SOURCES: dict[type, list[tuple[type[BaseModel], dict[str, str] | None]]] = {
    FixMatchSettings: [(TrainSection, None), (CrestSection, None), (InitSection, None)],
    StudentSettings: [
        (SupervisedTrainSection, None),
        (
            NoisyStudentSection,
            {
                "pseudo_label_smoothing": "label_smoothing",
                "unlabel_ratio": "unlabel_ratio",
                "pseudo_batch_ratio": "pseudo_batch_ratio",
            },
        ),
        (DistillSection, {"temperature": "temperature", "alpha": "alpha"}),
        (FitNetsSection, {"temperature": "temperature", "alpha": "alpha"}),
        (InitSection, None),
    ],
    LwfSettings: [(LwfTrainSection, None), (LwfSection, {"lambda_old": "lambda_old", "temperature": "temperature"})],
    HintSettings: [(SupervisedTrainSection, None)],
    PretextSettings: [(PretextSection, None)],
}
ON_PURPOSE = {
    (FixMatchSettings, "alignment"),  # plain FixMatch for the loop; CReST+ is `crest.alignment`'s default
    (StudentSettings, "temperature"),  # 1.0, no softening, where a teacher's T is 4.0: read with a teacher only
}


@pytest.mark.parametrize("settings", list(SOURCES), ids=lambda s: s.__name__)
def test_settings_defaults_are_the_configs_defaults(settings: type) -> None:
    """Code that builds the settings directly (tests, benchmarks) trains as a run with the default config would."""
    defaults = {f.name: f.default for f in dataclasses.fields(settings) if f.default is not dataclasses.MISSING}
    for section, given in SOURCES[settings]:
        keys = {name: name for name in defaults if name in section.model_fields} if given is None else given
        for field, key in keys.items():
            if (settings, field) in ON_PURPOSE:
                continue
            declared = section.model_fields[key].default
            assert defaults[field] == declared, (
                f"{settings.__name__}.{field} defaults to {defaults[field]!r}, {section.__name__}.{key} to {declared!r}"
            )
