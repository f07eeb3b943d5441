"""The entries of `tune.space` that are no search domain: what each one is instead, and what to write.

A space maps dotted config keys to domains (``{loguniform: [0.01, 0.1]}``); an entry that is a plain
value, a domain with a misspelled kind, or a section nested as the config's are is refused with the
entry to write. Apart from ``TuneSettings`` because telling a misspelled kind from a nested section
walks the pipeline's config model (``validate_config`` passes it in the validation context).
"""

from __future__ import annotations

import difflib
import math
import numbers
import typing
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from orchestrator.config.problems import submodel

DOMAIN_KINDS = ("choice", "grid", "randint", "uniform", "loguniform")
RANGE_EXAMPLES = {"randint": "[1, 3]", "uniform": "[0.3, 0.9]", "loguniform": "[0.01, 0.1]"}  # the kinds with two ends


def range_problem(kind: str, args: Any) -> str | None:
    """Why ``args`` are not the two ends of a ``kind`` range (`loguniform: [0.01, 0.1]`), or None.

    Why here, before pydantic reads them as a tuple: a wrong length or a text read as
    `tune.space.train.lr.loguniform[1]: required key is missing`, `Tuple should have at most 2 items` or
    `must be a valid tuple`, the validator's words, not what to write. A boolean end is left to the
    config's own message (YAML reads yes/no as booleans); a number written as text (`1e-3`, which
    YAML reads as text) is taken as pydantic takes it.
    """
    pair = isinstance(args, list | tuple) and len(args) == 2
    if pair and (any(isinstance(end, bool) for end in args) or all(_is_end(kind, end) for end in args)):
        return None
    what = "two integers, both included" if kind == "randint" else "two finite numbers"
    shown = f"the text {args!r:.60}" if isinstance(args, str) else f"{_flow(args):.60}"
    return f"{kind} takes [low, high] ({what}), got {shown}; write e.g. `{{{kind}: {RANGE_EXAMPLES[kind]}}}`"


def _is_end(kind: str, end: Any) -> bool:
    """Whether ``end`` is a finite number (an integer for randint), or text pydantic reads as one."""
    if isinstance(end, bool) or not isinstance(end, numbers.Real | str):
        return False
    try:
        number = float(int(end) if kind == "randint" and isinstance(end, str) else end)
    except (ValueError, OverflowError):
        return False
    return math.isfinite(number) and (kind != "randint" or number.is_integer())


def entry_problems(space: Mapping[Any, Any], model: type[BaseModel] | None) -> list[str]:
    """One line per entry of ``space`` that is no domain: a value, a misspelled kind, or a nested section.

    ``model`` is the whole file's config model, whose keys tell a misspelled kind from a nested
    section; None where a `tune:` section is validated alone.
    """
    problems = [_not_a_domain(str(key), got) for key, got in space.items() if not isinstance(got, Mapping)]
    problems += [
        _unknown_domain(str(key), got, model) or _nested_entry(str(key), got)
        for key, got in space.items()
        if _is_section(got)
    ]
    return problems


def overlap_problem(space: Mapping[str, Any]) -> str | None:
    """Why ``space`` holds an entry for a section beside entries for keys inside it (`augment.strong` and
    `augment.strong.num_ops`), or None: a trial's values are overrides, and overrides that overlap are refused."""
    nested = [(outer, inner) for outer in space for inner in space if inner.startswith(f"{outer}.")]
    if not nested:
        return None
    pairs = "; ".join(f"{outer!r} holds {inner!r}" for outer, inner in nested)
    return (
        f"entries overlap ({pairs}), so a trial would set one key twice; keep one of each pair: the section's "
        "entry, or the entries of the keys inside it"
    )


def _not_a_domain(key: str, got: Any) -> str:
    """A space entry that is a value, not a domain, and how to write it (`tune.space.train.lr.loguniform=[1, 2]`).

    A command-line ``tune.space.KEY=...`` sets the entry KEY whole: its value is the domain.
    """
    base, _, kind = key.rpartition(".")
    if base and kind in DOMAIN_KINDS:
        shown = yaml.safe_dump(got, default_flow_style=True).strip().removesuffix("...").strip()
        return (
            f"entry {key!r} names a domain kind after the key; write the key with its domain: `{base}: {{{kind}: "
            f"{shown}}}` (on the command line: tune.space.{base}='{{{kind}: {shown}}}')"
        )
    return (
        f"entry {key!r} must be a domain, one of {', '.join(DOMAIN_KINDS)} (got {got!r:.60}); write e.g. "
        f"`{key}: {{choice: [...]}}` (on the command line: tune.space.{key}='{{loguniform: [0.01, 0.1]}}')"
    )


def _is_section(entry: Any) -> bool:
    """Whether a space entry is a nested section (`augment: {strong: {...}}`), not a domain: no key of it is a kind."""
    return isinstance(entry, Mapping) and bool(entry) and not any(str(key) in DOMAIN_KINDS for key in entry)


def _unknown_domain(key: str, entry: Mapping[str, Any], model: type[BaseModel] | None) -> str | None:
    """An entry that reads as a domain whose kind is misspelled (`train.lr: {unifrom: [0.01, 0.1]}`), named so; None
    for one that reads as a nested config section (``_nested_entry``).

    It is a misspelled kind when its one key holds a list, as a domain's arguments, and ``KEY.NAME`` is no key of
    the config model. Why: it was called "nested like a config section" with the advice `train.lr.unifrom:
    [0.01, 0.1]`, which was then refused as no domain. Where the model is not known (a `tune:` section validated
    alone), only a name close to a kind is taken for one.
    """
    if len(entry) != 1:
        return None
    [(name, args)] = entry.items()
    if not isinstance(args, list):
        return None
    close = difflib.get_close_matches(str(name), DOMAIN_KINDS, n=1, cutoff=0.7)
    if (model is None and not close) or (model is not None and _config_key(model, f"{key}.{name}")):
        return None
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown domain {str(name)!r} for {key}{hint}; domains: {', '.join(DOMAIN_KINDS)}"


def _config_key(model: type[BaseModel], key: str) -> bool:
    """Whether dotted ``key`` names a setting of ``model`` (a key inside a section whose keys are free counts)."""
    annotation: Any = model
    for part in key.split("."):
        section = submodel(annotation)
        if section is None:
            return _free_keys(annotation)
        if part not in section.model_fields:
            return False
        annotation = section.model_fields[part].annotation
    return True


def _free_keys(annotation: Any) -> bool:
    """Whether a setting of type ``annotation`` takes keys of any name (a mapping, or anything)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation) or annotation
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return True
    return any(_free_keys(arg) for arg in typing.get_args(annotation))


def _nested_entry(key: str, section: Mapping[str, Any]) -> str:
    """A space entry nested as the config's sections are, and the dotted keys to write instead.

    Why: `space: {augment: {strong: {num_ops: {randint: [1, 3]}}}}` was refused as
    `tune.space.augment.strong: unknown key; valid keys: choice, grid, ...`, which named the domain
    kinds but not that a space's keys are dotted config keys, one entry per key.
    """
    shown = "; ".join(
        f"{dotted_key}: {yaml.safe_dump(domain, default_flow_style=True).strip().removesuffix('...').strip()}"
        for dotted_key, domain in _dotted_entries(key, section).items()
    )
    return (
        f"entry {key!r} is nested like a config section, but a space's keys are dotted config keys (as on the "
        f"command line), each with its domain; write `{shown}`"
    )


def _dotted_entries(prefix: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """A nested space entry as dotted keys, down to each domain (a mapping naming a kind) or value."""
    flat: dict[str, Any] = {}
    for key, value in section.items():
        if _is_section(value):
            flat.update(_dotted_entries(f"{prefix}.{key}", value))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


def _flow(value: Any) -> str:
    """``value`` as YAML writes it on one line (`[0.01, 0.1]`), as the user wrote it; repr where YAML cannot."""
    try:
        return yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip().removesuffix("...").strip()
    except yaml.YAMLError:  # a tuple or a numpy number of a domain built in Python
        return repr(value)
