"""A pipeline file read as `relay run|validate|tune|submit` read it: YAML, overrides, a checked config.

YAML -> dict -> dotted overrides -> validated config -> preflight, every problem raised at once, each
naming the override that set its key (``from_override``). Apart from the run record: a file is the
user's input, checked before anything is written; a record is what a run saved, read back.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from orchestrator.cli.common import Pipelines
from orchestrator.cli.config_checks import checked_config
from orchestrator.cli.installed_pipelines import installed_pipelines, say_wiring
from orchestrator.config import apply_overrides, load_yaml, validate_config
from orchestrator.errors import ConfigError
from orchestrator.registry import get_pipeline

ON_THE_COMMAND_LINE = "set on the command line"  # where `relay`'s `key=value` overrides come from, for a problem
BY_OVERRIDES = "set by overrides"  # where the Python API's come from (``relay.run(..., overrides=[...])``)


def overrides_origin(args: argparse.Namespace) -> str:
    """How a problem names where ``args.overrides`` came from: the command line, unless the caller (the Python
    API, which has none) set ``args.overrides_origin``."""
    return getattr(args, "overrides_origin", ON_THE_COMMAND_LINE)


def load_pipeline_config(
    path: str,
    overrides: list[str],
    pipelines: Pipelines | None = None,
    local: bool = True,
    origin: str = ON_THE_COMMAND_LINE,
) -> tuple[Any, Any]:
    """The pipeline spec and checked config of a file (``load_pipeline_file`` without the file itself)."""
    spec, config, _ = load_pipeline_file(path, overrides, pipelines, local, origin)
    return spec, config


def load_pipeline_file(
    path: str,
    overrides: list[str],
    pipelines: Pipelines | None = None,
    local: bool = True,
    origin: str = ON_THE_COMMAND_LINE,
) -> tuple[Any, Any, dict[str, Any]]:
    """YAML -> dict -> dotted overrides -> validated config -> preflight; every problem raised at once.

    The preflight covers the data (the pipeline's own check) and where a run would write
    (workspace, artifact store, tracking database); ``local`` False checks only what does not
    depend on this machine's folders (``relay submit``: they are the cluster's; data in a folder this
    machine lacks is left to the job, which checks and pins it before it writes). Returns the spec,
    the config and the file with the overrides applied, both with what the config names by
    location pinned by content (a sharded dataset's digest: ``DataSpec.pins``), so the stage
    cache tells datasets apart; `relay tune` builds its trials from the file. ``origin``: how a
    problem names where the overrides came from (``from_override``).
    """
    data = apply_overrides(load_yaml(path), overrides)
    pipelines = installed_pipelines() if pipelines is None else pipelines
    spec = get_pipeline(data.get("pipeline"), pipelines, source=path, overrides=overrides, origin=origin)
    try:
        data, config, elsewhere = checked_config(spec, path, data, local)
    except ConfigError as exc:  # each problem names the override that set its key: the file is the heading
        raise overridden(exc.problems, overrides, path, origin) from exc
    say_wiring(spec)
    pins = spec.data.pins(config) if spec.data is not None and not elsewhere else {}
    if not pins:
        return spec, config, data
    pinned = apply_overrides(data, pins)
    return spec, validate_config(spec.config_model, pinned, source=path), pinned


def overridden(problems: list[str], overrides: list[str], path: str, origin: str = ON_THE_COMMAND_LINE) -> ConfigError:
    """The error of ``problems`` in file ``path``, each naming the override that set its key (``from_override``)."""
    return ConfigError([from_override(problem, overrides, origin) for problem in problems], path)


def from_override(problem: str, overrides: list[str], origin: str = ON_THE_COMMAND_LINE) -> str:
    """``problem``, with the overrides that set its key, or a key it names, named: the message is headed by the file.

    ``origin`` says where they came from: ``ON_THE_COMMAND_LINE`` for `relay`, ``BY_OVERRIDES`` for the
    Python API, whose caller typed no command line.

    Why: `relay run smoke.yaml train=5` said the problem was "in smoke.yaml", where the user finds no such line;
    and a problem comparing two keys (`train.warmup_steps: ... than train.steps (20)`) whose own key the file
    set came from the override of the other (`train.steps=20`), and named none.
    """
    key = _problem_key(problem)
    keys = [(item, item.partition("=")[0].strip()) for item in overrides]
    # the override sets the key, a list item of it, or a section above it: the last such one counted
    above = {item for item, given in keys if given and (key == given or key.startswith((f"{given}.", f"{given}[")))}
    inside = [item for item, given in keys if given.startswith(f"{key}.")]  # inside the section the problem is about
    setting = [item for item, _ in keys if item in above or item in inside]
    # A section's problem (`resources: ... resources.filter ...`) may come from any override inside the
    # section: those whose keys it names are the ones; failing that, all of them, not a guess at one.
    named = [item for item, given in keys if item in inside and _named_in(given, key, problem)]
    # no override set the key: those of the keys the message names (`than train.steps (20)`) caused it
    chosen = named or (setting if inside else setting[-1:]) or _mentioned(problem, keys)
    if not chosen:
        return problem
    return f"{problem} ({origin}: {', '.join(dict.fromkeys(chosen))})"


def _named_in(given: str, key: str, problem: str) -> bool:
    """Whether a problem about section ``key`` names override key ``given`` or a section of it below ``key``
    (`resources.filter` for `resources.filter.num_cpus`)."""
    parts = given.split(".")
    depth = len(key.split("."))
    return any(".".join(parts[:n]) in problem.split(":", 1)[-1] for n in range(depth + 1, len(parts) + 1))


def _problem_key(problem: str) -> str:
    """The key a problem is about: its heading (`train.steps` of `train.steps: must be > 0`), or the dotted key
    it starts with where it has none (`lwf.old_classes` of `lwf.old_classes [5, 6] and data.classes ... share`)."""
    head = problem.split(":", 1)[0]
    leading = re.match(r"([A-Za-z_]\w*(?:\.\w+)+) ", problem)
    return leading.group(1) if " " in head and leading else head


def _mentioned(problem: str, keys: list[tuple[str, str]]) -> list[str]:
    """The last override of each dotted key the problem names as a whole (`train.steps`, not the
    `tune.space.train.steps` entry, nor a file's quoted key `'train.steps'`)."""
    last = {given: item for item, given in keys if "." in given}
    return [item for given, item in last.items() if re.search(rf"(?<![\w.']){re.escape(given)}(?![\w'])", problem)]
