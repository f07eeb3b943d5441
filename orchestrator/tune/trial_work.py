"""What a trial computes, as its stages' fingerprints, and the keys of a space no value of which changes it
(a list of one value among them: the key is pinned).

A key the config does not read under its other settings gives trials that differ in name only;
``inert_keys`` finds each so that `relay tune` and `relay validate` warn of it (a warning, not a
refusal: such a sweep still ranks its trials on its other keys). Apart from the checks because it
builds and fingerprints the pipeline of every probed value: a question of work, not of validity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.config import (
    SearchDomain,
    apply_overrides,
    validate_config,
)
from orchestrator.dag import Pipeline
from orchestrator.engine.fingerprint import fingerprint
from orchestrator.errors import ConfigError, PipelineError
from orchestrator.tune.space import probe_values
from orchestrator.tune.sweep_checks import fixed_key_problem, one_value, single_value_range_problem


def inert_keys(
    base: Mapping[str, Any],
    space: Mapping[str, SearchDomain],
    config_model: type,
    build: Callable[[Any], Pipeline],
    ranked_on: Sequence[str] = (),
) -> list[str]:
    """One warning line per key of the space no value of which changes what a trial computes (``trial_work``).

    ``ranked_on``: the stages that report the sweep's metric (``sweep_check``); a trial runs them and what
    they need, no more (``left_out_stages``), so only that work counts. Why: a key read only by a stage
    trials leave out (a plug-in's stage after the evaluation, a no-teacher baseline) gave trials that
    differed in name only, with no warning, and a "best" value that meant nothing. Empty: the whole pipeline.
    Why a warning, not a refusal: such a sweep runs and ranks its trials correctly on the other keys; a
    quick check with one generation (where the temperature schedule is never used) is a fair thing to run.
    Keys the space check refuses are left to it. A list of one value (`choice: [0.6]`) is warned of as pinned
    (``_one_value_line``).
    """
    lines = []
    for key, domain in space.items():
        works = _works(base, key, domain, config_model, build, ranked_on)
        if not works:
            continue
        if one_value(domain):
            lines.append(_one_value_line(key, domain))
        elif all(ranked == works[0][1] for _, ranked in works):
            lines.append(_inert_line(key, domain, _stages_apart([whole for whole, _ in works])))
    return lines


def _works(
    base: Mapping[str, Any],
    key: str,
    domain: SearchDomain,
    config_model: type,
    build: Callable[[Any], Pipeline],
    ranked_on: Sequence[str],
) -> list[tuple[dict[str, str], dict[str, str]]]:
    """``_work_and_ranked`` of each value standing for ``domain``; [] where the space check refuses the key: a
    value the config or the pipeline refuses, a key no trial may vary, or a range with equal ends."""
    if fixed_key_problem(key) or single_value_range_problem(key, domain):
        return []
    works = []
    for value in probe_values(domain):
        try:
            config = validate_config(config_model, apply_overrides(base, {key: value}))
            works.append(_work_and_ranked(build(config), config.seed, ranked_on))
        except (ConfigError, PipelineError):
            return []
    return works


def _one_value_line(key: str, domain: SearchDomain) -> str:
    """The warning for a list of one value (`choice: [0.6]`): it pins the key, which is allowed.

    Why a warning, not a refusal as for a range with equal ends: a one-value list is the way to pin one
    key of a kept space from the command line (`tune.space.crest.t_min='{choice: [0.6]}'`) or to give a
    grid a one-point axis, and the sweep still ranks its trials on its other keys; but a sweep whose keys
    are all pinned runs copies, and a user who meant to search the key should hear that it is not searched.
    """
    value = domain.args[0]
    return (
        f"tune.space.{key}: {domain.kind} {list(domain.args)} has one value, so every trial gets {key}={value}: "
        "the key is pinned, as setting it in the config would pin it, and tells no trials apart; list more values "
        "to search it"
    )


def _inert_line(key: str, domain: SearchDomain, left_out_readers: Sequence[str]) -> str:
    """The warning for an inert key: read only by stages trials leave out (named), or read by no stage."""
    values = f"no value of {domain.kind} {list(domain.args)} changes what a trial computes under this config"
    if left_out_readers:
        why = (
            f"it is read only by {', '.join(left_out_readers)}, which trials do not run: they run what "
            "tune.metric's stages need; `relay run` of the sweep's best.yaml runs them"
        )
    else:
        why = (
            "it is not read with the config's other settings, e.g. a setting of a feature the config turns off, "
            "or of generations it does not have"
        )
    return (
        f"tune.space.{key}: {values} ({why}), so it cannot tell the trials apart; remove it from tune.space, "
        "or set what makes it matter in the base config"
    )


def _stages_apart(works: Sequence[Mapping[str, str]]) -> list[str]:
    """The stages whose work differs between ``works`` (each a ``trial_work``), in the first one's order."""
    first = works[0]
    return [name for name in first if any(work.get(name) != first[name] for work in works[1:])]


def _work_and_ranked(pipeline: Pipeline, seed: int, ranked_on: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(``trial_work`` of the whole pipeline, of the stages a trial runs: ``_ranked_work``)."""
    whole = trial_work(pipeline, seed)
    return whole, _ranked_work(pipeline, whole, ranked_on)


def _ranked_work(pipeline: Pipeline, work: Mapping[str, str], ranked_on: Sequence[str]) -> dict[str, str]:
    """``work`` (a ``trial_work``) of the stages a trial runs: ``ranked_on`` and their upstream (all when none is
    given)."""
    ranked = [name for name in ranked_on if name in work]
    if not ranked:
        return dict(work)
    kept = set(ranked).union(*(pipeline.upstream(name) for name in ranked))
    return {name: fingerprint for name, fingerprint in work.items() if name in kept}


def trial_work(pipeline: Pipeline, seed: int) -> dict[str, str]:
    """Each stage's fingerprint as a run of ``pipeline`` computes it, an input stood for by its producer's: two
    configs with the same are the same work, the second all cache hits.

    Why: a searched key the config never reads (`crest.t_min` with `crest.alignment=false`) gave trials that
    differed only in name; the sweep spent its budget on copies and ranked them on noise-free ties.
    """
    work: dict[str, str] = {}
    for layer in pipeline.layers():
        for stage in layer:
            inputs = {name: work.get(_producer_name(pipeline, name), name) for name in stage.inputs}
            work[stage.name] = fingerprint(stage, inputs, "", seed)
    return work


def _producer_name(pipeline: Pipeline, artifact: str) -> str:
    try:
        return pipeline.producer(artifact).name
    except PipelineError:  # an input no stage writes (a given checkpoint): its name stands for it
        return artifact
