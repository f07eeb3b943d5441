"""Reading what a user writes in YAML: config files and dotted `key=value` overrides, into plain dicts.

The CLI and Ray Tune share ``apply_overrides`` so a key means the same thing everywhere. Every
YAML a user writes goes through ``parse_yaml``, which refuses a key given twice, as ``apply_overrides``
refuses one among the overrides; every failure (a missing file, a folder, a binary file, a syntax
error) is a ConfigError that says where.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from orchestrator.errors import ConfigError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping."""


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader (libyaml's parser where PyYAML has it), except that a key given twice is an error.

    Plain YAML lets the last one win silently (``seed`` twice, ``train:`` twice): the user
    believes a setting that is not the one used. Merge keys (``<<:``) still override as YAML says.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                line = first_line.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            first_line[key] = key_node.start_mark.line
            if line is not None:
                raise DuplicateKeyError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first given on line {line + 1}); keep one of them",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


class Base60Error(yaml.constructor.ConstructorError):
    """A YAML 1.1 base-60 number (``1:20`` reads as 80)."""


def _refuse_base_60(loader: UniqueKeyLoader, node: yaml.ScalarNode, construct: Any) -> Any:
    """Refuse a number written with colons, which YAML 1.1 reads in base 60 (``steps: 1:20`` became 80).

    Nobody writes a step count, a rate or a size that way on purpose: a time or a ratio was meant.
    """
    if ":" in str(node.value):
        raise Base60Error(
            "while constructing a number",
            node.start_mark,
            f"{node.value!r} is a base-60 number in YAML 1.1 (read as {construct(loader, node)!r}); "
            f"write the number itself, or quote it ('{node.value}') if it is text",
            node.start_mark,
        )
    return construct(loader, node)


for _tag, _construct in (
    ("tag:yaml.org,2002:int", yaml.constructor.SafeConstructor.construct_yaml_int),
    ("tag:yaml.org,2002:float", yaml.constructor.SafeConstructor.construct_yaml_float),
):
    UniqueKeyLoader.add_constructor(
        _tag, lambda loader, node, construct=_construct: _refuse_base_60(loader, node, construct)
    )


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys: every YAML a user writes (files, override values) goes through it."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects


REPOSITORY = Path(__file__).resolve().parents[1]  # where the bundled pipelines/configs/ live


def not_found_message(path: Path) -> str:
    """A config file that is not there: where a relative path was looked for, and the bundled file it may mean.

    Why: "run from the repository root" fitted only the bundled configs; a user's own file was
    sent to a folder that does not hold it.
    """
    if path.is_absolute():
        return f"file not found: {path}; check the path"
    bundled = REPOSITORY / path
    if bundled.is_file():
        return f"file not found: {path} in {_here()}; the bundled one is {bundled} (run from {REPOSITORY}, or pass that path)"
    return f"file not found: {path} (looked in {_here()}); check the path"


def _here() -> str:
    """The current folder for a message, or that it was deleted (``current_directory``)."""
    here = current_directory()
    if here is None:
        return "the current folder, which was deleted (cd to an existing folder, or pass an absolute path)"
    return str(here)


def current_directory() -> Path | None:
    """This process's current directory; None when it was deleted under the process.

    Why: ``Path.cwd()`` (``os.getcwd()``) of a deleted directory raises a bare ENOENT that names no path. A Ray
    job's driver loses its directory when Ray unpacks the job's working_dir again, and that error, raised while
    something else was being done (a not-found message built, a relative config path read, an MLflow error
    explained), hid what failed or cut the tracking start short. Every caller asks here and says what None means.
    """
    try:
        return Path.cwd()
    except FileNotFoundError:
        return None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a ConfigError that says where."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([not_found_message(path)], source) from exc
    except IsADirectoryError as exc:
        raise ConfigError(
            [f"{path} is a folder, not a config file; pass a YAML file (e.g. {path}/NAME.yaml)"], source
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path} is not a text file (byte {exc.start} is not UTF-8); pass a YAML config file"], source
        ) from exc
    except PermissionError as exc:
        raise ConfigError([f"cannot read {path}: permission denied; check its permissions"], source) from exc
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}; pass a readable YAML file"], source) from exc
    return yaml_mapping(text, source)


def yaml_mapping(text: str, source: str | None = None) -> dict[str, Any]:
    """A YAML mapping of sections from text (a file, a run record in the artifact store); a ConfigError says where."""
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], source) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"top level must be a mapping of sections (got {type(data).__name__}); write `key: value` lines"], source
        )
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Describe a YAML syntax error with its 1-based line and column."""
    mark = getattr(exc, "problem_mark", None)
    what = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever the parser said
    if mark is None:
        return f"malformed YAML: {what}; fix the syntax"
    if isinstance(exc, (DuplicateKeyError, Base60Error)):
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"malformed YAML at line {mark.line + 1}, column {mark.column + 1}: {what}; fix the syntax there"


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied.

    ``overrides`` is either CLI-style strings ``"a.b.c=3"`` (values parsed with
    ``parse_yaml``, so ``3`` is an int and ``[1, 2]`` a list) or a mapping of
    dotted keys to already-typed values (what Ray Tune samples). Missing
    intermediate sections are created. Every malformed override is reported
    in one ConfigError, and so is a key given twice, or with a section above it
    (``_conflicts``): which value would count hung on their order.
    """
    result = copy.deepcopy(dict(data))
    parsed = _parse_overrides(overrides)
    problems = _conflicts(parsed)
    for key, value, problem, _ in parsed:
        problem = problem or _set_dotted(result, key, value)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(problems, "overrides")
    return result


class Override(NamedTuple):
    """One dotted override: its key, its value, a problem reading it (or None), and how it was given."""

    key: str
    value: Any
    problem: str | None
    given: str  # as the user wrote it (`train.steps=4`), for messages


def _parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> list[Override]:
    """One ``Override`` per override, in the order given."""
    if isinstance(overrides, Mapping):
        return [Override(str(k), v, None, f"{k}={v!r}") for k, v in overrides.items()]
    if isinstance(overrides, str):
        overrides = [overrides]
    parsed: list[Override] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problem = f"{item!r}: expected key=value (e.g. train.steps=100); got no '=' or an empty key"
            parsed.append(Override(key, None, problem, item))
            continue
        try:
            parsed.append(Override(key, parse_yaml(raw), None, item))
        except yaml.YAMLError as exc:
            problem = f"{key}: value {raw!r} is not valid YAML ({_yaml_problem(exc)}); quote it"
            parsed.append(Override(key, None, problem, item))
    return parsed


def _conflicts(parsed: Sequence[Override]) -> list[str]:
    """A problem per key given more than once, and per section given whole beside keys inside it.

    Why: the last one silently won (`train.steps=3 train.steps=4` trained 4 steps), or a section given
    whole after a key inside it (`train.steps=4 train='{steps: 3}'`) dropped that key, and the user
    believed a setting that was not the one used. A key given twice in a YAML file is refused alike.
    """
    by_key: dict[tuple[str, ...], list[Override]] = {}
    for override in parsed:
        if override.problem is None:
            by_key.setdefault(tuple(_key_parts(override.key)), []).append(override)
    problems = [
        f"{given[0].key}: given {_times(len(given))} ({', then '.join(o.given for o in given)}); keep one of them"
        for given in by_key.values()
        if len(given) > 1
    ]
    for parts, given in by_key.items():
        inside = [o.given for below, items in by_key.items() if _is_inside(below, parts) for o in items]
        if inside:
            key = given[0].key
            problems.append(
                f"{key}: given whole ({given[-1].given}) and by keys inside it ({', '.join(inside)}), so which value "
                f"counts would hang on their order; keep one: set {key}'s keys one by one, or write them all in "
                f"{key}'s value"
            )
    return problems


def _is_inside(key: tuple[str, ...], section: tuple[str, ...]) -> bool:
    """Whether ``key`` (its parts) names a key below ``section``: ``train.steps`` is inside ``train``."""
    return len(key) > len(section) and key[: len(section)] == section


def layered(*layers: Sequence[str]) -> list[str]:
    """``key=value`` overrides composed from layers, a later one replacing an earlier one of the same key.

    For programs that build a run's overrides from layers: benchmarks/science.py (a method's
    `crest.generations` and `crest.alignment`, then the seed's `seed`, `data.fold`, `data.class_order`)
    and benchmarks/methods.py (an experiment's overrides, the command line's, then the seed's).
    ``apply_overrides`` refuses a key given twice, which a user on the command line did not mean, so a
    program says here which one it means.
    """
    last: dict[str, str] = {}
    for item in (item for layer in layers for item in layer):
        key = item.partition("=")[0].strip()
        last.pop(key, None)
        last[key] = item
    return list(last.values())


KEYED_BY_DOTTED_KEYS = ("tune.space",)  # mappings whose keys are dotted config keys themselves


def _key_parts(key: str) -> list[str]:
    """The sections and the key ``key`` names: ``train.lr`` -> [train, lr].

    Under a mapping keyed by dotted keys the rest is one key: ``tune.space.train.lr`` sets the
    entry ``train.lr`` of ``tune.space`` (a search space names config keys, ``train.lr: {...}``),
    not a section ``train`` inside it, which no space has.
    """
    for mapping in KEYED_BY_DOTTED_KEYS:
        if key.startswith(f"{mapping}.") and key != f"{mapping}.":
            return [*mapping.split("."), key[len(mapping) + 1 :]]
    return key.split(".")


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> str | None:
    """Set ``a.b.c`` in nested dicts, creating sections; return a problem or None."""
    parts = _key_parts(key)
    if any(not p for p in parts):
        return f"{key}: empty segment in dotted key; write keys like section.name"
    indexed = next((i for i, p in enumerate(parts) if "[" in p or "]" in p), None)
    if indexed is not None:  # `domain.sources[0].strength=2` made a key named "sources[0]"
        whole = ".".join([*parts[:indexed], parts[indexed].split("[", 1)[0]])
        return f"{key}: {whole_list_fix(whole)}"
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            if isinstance(child, list) and parts[depth + 1].isdigit():  # `data.classes.0=3` of a file's list
                return f"{key}: {whole_list_fix(prefix)}"
            return (
                f"{key}: cannot set inside {prefix!r}, which is {_kind_of(child)} "
                f"(got {child!r}), not a section; override {prefix} itself"
            )
        node = child
    node[parts[-1]] = value
    return None


def whole_list_fix(whole: str) -> str:
    """What to do where the command line set one item of the list ``whole``: `data.classes[0]=3`, or
    `data.classes.0=3`, which reads as a section `0` where the config validation finds a list."""
    return (
        "one item of a list cannot be set on the command line; "
        f"override the whole list, e.g. {whole}='[...]' with every item written out"
    )


def _times(count: int) -> str:
    return "twice" if count == 2 else f"{count} times"


def _kind_of(value: Any) -> str:
    """What a value is, in the user's words: ``a number``, not pydantic's or Python's ``a int``."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "a yes/no value"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a value of type {type(value).__name__}"
