"""Every key a registered pipeline's config accepts is documented in docs/CONFIG.md.

Why: `relay validate` accepted keys that were written down nowhere a user looks
(`augment.weak.pad_fraction`, `tracking.log_models`, `noisy.per_class`, ...), so a user adapting
Relay found them only by reading the pydantic models. This test walks each PipelineSpec's config
model the way a YAML file nests it and fails, naming the keys, when one has no entry in the
reference: a new key cannot ship undocumented.

A key counts as documented when the reference holds it in backticks, exactly as dotted from the
top (`augment.weak.pad_fraction`). A documented pattern may stand for a family of keys with a
placeholder segment (`resources.<stage>.num_cpus`); it covers `resources.rebalance.num_cpus` only
when the concrete prefix (`resources.rebalance`) is documented as well, so a new stage role still
needs its own entry. Fields typed as a dict or a list (`tune.space`, `domain.sources`) are keys
themselves: their items are the user's, not the schema's.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from pipelines.registry import PIPELINES

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"
PLACEHOLDER = re.compile(r"^<[^<>.]+>$")


def section_model(annotation: object) -> type[BaseModel] | None:
    """The config section (a BaseModel) a field holds, also when optional (`tune: TuneSettings | None`).

    None for a plain value and for a dict or list of anything, sections included.
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [section_model(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return next((member for member in members if member is not None), None)
    if typing.get_origin(annotation) is typing.Annotated:
        return section_model(typing.get_args(annotation)[0])
    return None


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """The dotted keys of the values a file of ``model`` sets (`train.steps`), sections walked into."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        section = section_model(field.annotation)
        if section is None:
            keys.append(prefix + name)
        else:
            keys.extend(config_keys(section, f"{prefix}{name}."))
    return keys


def documented_names(text: str) -> set[str]:
    """What the reference holds in backticks (inline code spans)."""
    return set(re.findall(r"`([^`\n]+)`", text))


def covered(key: str, names: set[str]) -> bool:
    """Whether ``key`` is documented: literally, or by a placeholder pattern whose concrete prefix is documented too."""
    if key in names:
        return True
    segments = key.split(".")
    for name in names:
        pattern = name.split(".")
        if len(pattern) != len(segments) or not any(PLACEHOLDER.match(part) for part in pattern):
            continue
        fits = all(PLACEHOLDER.match(want) or want == got for want, got in zip(pattern, segments, strict=True))
        prefixes = [".".join(segments[: i + 1]) for i, want in enumerate(pattern) if PLACEHOLDER.match(want)]
        if fits and all(prefix in names for prefix in prefixes):
            return True
    return False


def undocumented(keys_by_pipeline: dict[str, list[str]], text: str) -> dict[str, list[str]]:
    """Key -> the pipelines that accept it, for every key the reference ``text`` does not document."""
    names = documented_names(text)
    missing: dict[str, list[str]] = {}
    for pipeline, keys in keys_by_pipeline.items():
        for key in keys:
            if not covered(key, names):
                missing.setdefault(key, []).append(pipeline)
    return missing


def test_every_config_key_of_every_pipeline_is_in_the_reference() -> None:
    keys = {name: config_keys(spec.config_model) for name, spec in PIPELINES.items()}
    missing = undocumented(keys, REFERENCE.read_text(encoding="utf-8"))
    lines = [f"`{key}` ({', '.join(pipelines)})" for key, pipelines in sorted(missing.items())]
    assert not missing, f"{REFERENCE.name} documents no entry for these config keys: " + "; ".join(lines)


def test_the_walk_reaches_nested_optional_and_stops_at_dicts_and_lists() -> None:
    """The walk itself: a nested section's keys (`augment.weak.pad_fraction`), an optional one's (`tune.metric`),
    and a dict or list field as one key (`tune.space`, `resources.train.custom`, `domain.sources`)."""
    keys = set(config_keys(PIPELINES["domain_similarity"].config_model))
    assert {"augment.weak.pad_fraction", "tune.metric", "tune.space", "resources.train.custom"} <= keys
    assert {"domain.sources", "probe", "data.classes"} <= keys
    assert not any(key.startswith(("tune.space.", "domain.sources.", "resources.train.custom.")) for key in keys)
    assert "augment" not in keys and "augment.weak" not in keys  # sections are walked into, not keys


def test_a_placeholder_covers_a_family_only_with_its_concrete_prefix() -> None:
    documented = "`resources.<stage>.num_cpus` on `resources.train`"
    keys = {"crest": ["resources.train.num_cpus", "resources.rebalance.num_cpus", "resources.train.workers"]}
    assert undocumented(keys, documented) == {
        "resources.rebalance.num_cpus": ["crest"],
        "resources.train.workers": ["crest"],
    }
