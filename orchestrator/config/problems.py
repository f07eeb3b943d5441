"""A pydantic validation error as a user reads it: the dotted key, what was expected, what came, the fix.

``orchestrator.config.validate_config`` collects every problem of a file; this module words each one
("did you mean" for a misspelled key, the valid keys of its section, how to nest a dotted key a YAML
file wrote as one name). Apart from the config's sections because it knows pydantic's error kinds, not
Relay's keys: a new section needs no change here.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel

from orchestrator.yaml_input import whole_list_fix

# Names pydantic inserts into an error location for the member of a union it
# tried; they are not config keys, so they are dropped from dotted keys.
_UNION_TAGS = frozenset({"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "none"})


def merge(items: typing.Iterable[tuple[str, str]]) -> list[str]:
    """Join problems for one key (pydantic reports each union member apart)."""
    by_key: dict[str, list[str]] = {}
    for key, what in items:
        whats = by_key.setdefault(key, [])
        if what not in whats:
            whats.append(what)
    return [f"{key}: {' or '.join(whats)}" if key else " or ".join(whats) for key, whats in by_key.items()]


def keyed(key: str, message: str) -> tuple[str, str]:
    """(key, message) with a check across sections' message (no key of its own) keyed by the key heading it,
    so that ``merge`` keeps two such problems apart."""
    head, colon, rest = message.partition(": ")
    return (head, rest) if not key and colon and " " not in head else (key, message)


def describe(model_cls: type[BaseModel], err: Mapping[str, Any]) -> tuple[str, str]:
    """One pydantic error as (dotted key, 'what; fix')."""
    loc = [p for p in err["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p))]
    key = _dotted(loc) or "<top level>"
    kind = err["type"]
    if not loc and kind in OWN_WORDS:  # a check across sections: its message names the keys it compared
        return "", _expectation(err)
    if kind == "extra_forbidden" and loc and isinstance(loc[-1], str) and "." in loc[-1]:
        return _dotted_file_key(loc, err.get("input"))
    if kind == "extra_forbidden":
        return key, _unknown_key(model_cls, loc)
    if kind == "missing":
        return key, "required key is missing; add it"
    if kind in OWN_WORDS:  # our validators' messages already say what was expected, what came and the fix
        return _own_key(key, _expectation(err))
    got = err.get("input")
    if kind == "invalid_key" or (kind == "string_type" and err["loc"] and err["loc"][-1] == "[key]"):
        return _key_not_a_name(_dotted(loc[:-1]), got)
    if kind == "model_type":  # pydantic: "a valid dictionary or instance of TrainSection"
        return (
            key,
            f"must be a section of `key: value` settings (got {got!r:.80} of type {type(got).__name__}); write {key}: with its keys below it",
        )
    if isinstance(got, Mapping):  # a whole section where one value goes: echoing it buries the message
        return key, _section_where_value_goes(key, err, got)
    if kind == "string_type" and got is None:  # `key=` or `key:` with nothing after it: YAML reads null
        return (
            key,
            f"must be text, got nothing (YAML reads an empty value as null); give a value: {key}: NAME in a "
            f"file, {key}=NAME on the command line",
        )
    if kind == "string_type" and isinstance(got, (bool, int, float)):  # YAML read text as a number
        return (
            key,
            f"must be text, but YAML reads the value as {'a yes/no' if isinstance(got, bool) else 'a number'} "
            f"({got!r}); put it in quotes "
            f"as you wrote it: {key}: '...' in a file, \"{key}='...'\" on the command line",
        )
    return key, f"{_expectation(err)} (got {got!r} of type {type(got).__name__}); fix the value"


def _key_not_a_name(section: str, key: Any) -> tuple[str, str]:
    """(where, what to write) for a mapping key YAML read as a number, a yes/no value, a date or null.

    Why: every key of a config is a name, but YAML reads `1:`, `yes:` or `2024-01-01:` as other values;
    pydantic said "Keys should be strings ... fix the value" under a location such as `[1]`, and the
    recheck of the file without its invalid values (``config_checks.field_check``) crashed on the number.
    """
    if key is None:
        return section or "<top level>", "a key is empty (null); give it its name, or remove the line"
    try:  # as YAML writes it: 1, true, 2024-01-01
        shown = yaml.safe_dump(key, default_flow_style=True).strip().removesuffix("...").strip()
    except yaml.YAMLError:  # a Python object from the API (relay.run's config): no YAML form
        shown = repr(key)
    quoted = f"'{shown}'"
    if isinstance(key, bool):
        what, quoted = f"the yes/no value {shown} (yes, no, on, off, true and false are booleans in YAML)", "as written"
    elif isinstance(key, int | float):
        what = f"the number {shown}"
    else:
        what = f"a value of type {type(key).__name__} ({shown})"
    return (
        f"{section}.{shown}" if section else shown,
        f"YAML reads this key as {what}, not a name, and every key of a config is a name; write the key's name, "
        f"or put it in quotes ({quoted}) if that is its name",
    )


_LIST_TYPES = frozenset({"list_type", "tuple_type", "set_type", "frozen_set_type"})


def _section_where_value_goes(key: str, err: Mapping[str, Any], got: Mapping[Any, Any]) -> str:
    """What to write instead of the section ``got`` given where one value goes.

    A list given items by number as text keys (`data.classes.0=3` on the command line makes the section
    {'0': 3}; a file's `0:` is the number 0) was told to "write one value": it gets the advice of the
    `data.classes[0]=3` form, the whole list (``whole_list_fix``).
    """
    if err["type"] in _LIST_TYPES and got and all(isinstance(item, str) and item.isdigit() for item in got):
        return whole_list_fix(key)
    return f"{_expectation(err)}, not a section of settings (got keys {', '.join(map(str, got))[:80]}); write one value"


def _dotted_file_key(loc: Sequence[Any], value: Any) -> tuple[str, str]:
    """(the key quoted as the file wrote it, how to nest it) for a file's key with dots (`train.steps: 3`).

    Why: YAML reads `train.steps` in a file as one name, not `steps` inside `train` as the command line does;
    the problem said "unknown key" under `train.steps`, which read as the valid key an override of it set.
    Quoted, it is the file's literal key, and the fix is to nest it.
    """
    *above, dotted = loc
    *sections, last = dotted.split(".")
    shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    lines = [f"{'  ' * depth}{part}:" for depth, part in enumerate(sections)] + [
        f"{'  ' * len(sections)}{last}: {shown}"
    ]
    section = _dotted(above)
    where = f" inside {section}" if section else ""
    return (
        f"{section}.{dotted!r}" if section else repr(dotted),
        f"unknown key: in a YAML file a key with dots is one name, not a key inside a section (only the command "
        f"line reads it as nested); write it{where} as" + "".join(f"\n      {line}" for line in lines),
    )


def _own_key(key: str, message: str) -> tuple[str, str]:
    """(key, message) of a problem found in section ``key`` whose message may already be headed by its own key.

    A message headed by a key at or below ``key`` (`train.unlabeled_ratio: ...` from a check of the whole
    train section) is that key's problem, named once. Why: the section's key was put before it, and the user
    read `train: train.unlabeled_ratio: ...`; an override is matched to a problem by its key, too.
    """
    head, colon, rest = message.partition(": ")
    if colon and " " not in head and (head == key or head.startswith((f"{key}.", f"{key}["))):
        return head, rest
    return key, message


def _dotted(loc: Sequence[Any]) -> str:
    """('train', 'lrs', 0) -> 'train.lrs[0]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# The kinds of error Relay's own validators raise (ValueError, assert): their messages say the fix already.
OWN_WORDS = frozenset({"value_error", "assertion_error"})
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _expectation(err: Mapping[str, Any]) -> str:
    """Rephrase pydantic's message as what the value must be."""
    ctx = err.get("ctx") or {}
    for kind, symbol in _BOUNDS.items():
        if err["type"] == kind:
            bound = next(iter(ctx.values()), "?")
            return f"must be {symbol} {bound}"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg.replace("Input should be", "must be", 1)


def _unknown_key(model_cls: type[BaseModel], loc: Sequence[Any]) -> str:
    """Name the valid keys (and the closest one) where an unknown key was found."""
    model = _model_at(model_cls, loc[:-1])
    if model is None:
        return "unknown key; remove it"
    valid = sorted(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.7)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; valid keys: {', '.join(valid)}"


def _model_at(model_cls: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """Walk field annotations along ``loc`` to the model that owns the last key."""
    model: type[BaseModel] | None = model_cls
    for part in loc:
        if model is None:
            return None
        if isinstance(part, str) and part in model.model_fields:
            model = submodel(model.model_fields[part].annotation)
        # list indexes and dict keys keep the element model found by submodel
    return model


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation (Model, Model | None, list[Model], ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = submodel(arg)
        if found is not None:
            return found
    return None
