"""The checks a config file passes before anything is written, all reported in one go.

Field validation first; then, on the sections that validated, the class names, the data's preflight, where the
run writes and the pipeline's build. Why one go: a file with a field error and a build error showed only the
first, and the user met the second after fixing it.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator.cli.preflight import location_problems
from orchestrator.config import apply_overrides, validate_config
from orchestrator.engine.store_faults import StoreFault, store_failure, store_fault
from orchestrator.errors import ConfigError, PipelineError
from orchestrator.registry import PipelineSpec


def checked_config(spec: Any, path: str, data: dict[str, Any], local: bool) -> tuple[dict[str, Any], Any, str | None]:
    """(the file with class names as numbers, its validated config, the data this machine lacks or None), once
    validation, the preflight and the pipeline's build found no problem; else the ConfigError of them all.

    Why all at once: a file with a field error and a build error (`resources.train.workers: 2` on a stage that
    cannot split its work) showed only the field error, and the user met the other after fixing it. With field
    errors, the later checks run on the file without its invalid values (``FieldCheck``), and only what they find
    about the sections that validated is reported.
    """
    fields = field_check(spec.config_model, data, path)
    if fields.config is None:  # no valid config to check further (a required key missing)
        raise ConfigError(fields.problems, path)
    data, config, elsewhere, later = _later_checks(spec, path, fields, local)
    problems = [*fields.problems, *(problem for problem in later if fields.independent(problem))]
    if problems:
        raise ConfigError(_said_once([*problems, *_sweep_problems(spec, data, config, fields)]), path)
    return data, config, elsewhere


def _sweep_problems(spec: Any, data: dict[str, Any], config: Any, fields: FieldCheck) -> list[str]:
    """The problems `relay tune` (and `relay validate`) finds in the `tune:` section of a file refused anyway,
    on the file without its invalid values: a space key no config has, a value out of its range.

    Why: those checks ran only once the rest of the file was valid, so `tune.space.crest.t_min` low > high (or
    `train.lr: -1`) hid a misspelled `tune.space.train.stepz`, and the user met it after the fix. A problem is
    kept where it names no value left out (``_space_problem_holds``), or where what it read validated
    (``_tune_problem_holds``).
    """
    settings = getattr(config, "tune", None)
    if settings is None:
        return []
    from orchestrator.tune.sweep_checks import sweep_check  # the sweep's checks: only for a file with `tune:`

    base = {key: value for key, value in data.items() if key != "tune"}
    problems = sweep_check(base, config, settings, spec.build)[1]
    return [
        problem
        for problem in problems
        if fields.independent(problem) or _space_problem_holds(problem, fields) or _tune_problem_holds(problem, fields)
    ]


# The `tune:` settings each sweep check of a `tune.*` setting reads, besides the pipeline the file builds.
SWEEP_CHECK_READS = {
    "tune.metric": ("tune.metric",),
    "tune.grace_period": ("tune.grace_period", "tune.scheduler"),
    "tune.perturbation_interval": ("tune.perturbation_interval", "tune.scheduler"),
}


def _tune_problem_holds(problem: str, fields: FieldCheck) -> bool:
    """Whether a sweep check's problem of a `tune:` setting (`tune.metric: no stage reports ...`) is the file's own
    though other `tune.*` values failed: none of the settings it reads (``SWEEP_CHECK_READS``) was left out, and it
    names no value left out (as ``FieldCheck.independent`` asks of a section that validated).

    Why: the `tune:` section's field error (`tune.num_samples: 0`) withheld the whole section's later problems, so
    a `tune.metric` no stage reports was said only after the fix, though "every problem at once" was promised.
    """
    reads = SWEEP_CHECK_READS.get(problem.split(":", 1)[0])
    return reads is not None and not any(_names(problem, key) or key in reads for key in fields.failed_keys())


def _space_problem_holds(problem: str, fields: FieldCheck) -> bool:
    """Whether a ``tune.space.KEY: ...`` problem is the file's own: its entry validated, and it names no
    value left out (a space entry is probed with its own values, whatever the base file's value is)."""
    return (
        _section(problem) == "tune"
        and problem.startswith("tune.space.")
        and not any(_names(problem, key) for key in fields.failed_keys())
    )


def _said_once(problems: list[str]) -> list[str]:
    """``problems`` each once, less those that repeat another under a key above it (``KEY: problem``).

    Why: a check of a second task read from the same settings (LwF's old task, split by `data.class_order` too)
    reported `data.class_order`'s problem again as `lwf.old_classes: data.class_order: ...`, under a key the
    user never set; the problem is said once, under the key that holds the value.
    """
    unique = _unique(problems)
    return [problem for problem in unique if problem.partition(": ")[2] not in unique]


def _later_checks(
    spec: Any, path: str, fields: FieldCheck, local: bool
) -> tuple[dict[str, Any], Any, str | None, list[str]]:
    """The file and config with class names as numbers, the data this machine lacks, and every problem of the
    class names, the data, where the run writes and the pipeline's build (each check runs whatever the others found).

    The data's own check needs the class names as numbers: it is left out when a name is not the data's. Both
    wait while `data` has a field error: the default dataset would answer for the one the user named.
    """
    data, config, problems = fields.data, fields.config, []
    try:
        if not fields.failed("data"):
            data, config = _by_number(spec, path, data, config)
    except ConfigError as exc:
        problems += exc.problems
    elsewhere = None if local or spec.data is None else spec.data.elsewhere(config)
    if elsewhere:
        logging.getLogger("relay").info(
            "%s is not on this machine: the job checks the data on the cluster, before it writes", elsewhere
        )
    if not (elsewhere or problems or fields.failed(*PREFLIGHT_SECTIONS)):
        problems += data_problems(spec, config)
    if not fields.failed("run", "tracking"):  # a default workspace standing in for an invalid one is not the user's
        problems += location_problems(config.run, config.tracking, local)
    return data, config, elsewhere, problems + _build_problems(spec, config, trimmed=bool(fields.problems))


# What the pipelines' preflight reads: the data, and the starting weights (`init`, found in the run's stores:
# `run`, `tracking`) against the model. With a field error in one of them its default would stand in for the
# user's value (another workspace's runs), so the preflight waits for the fix.
PREFLIGHT_SECTIONS = ("data", "init", "model", "run", "tracking")

# The sections whose build problems hold whatever the file's other values are: a role's workers against the
# bodies of that role's stages. A probe naming a stage is not among them: which stages there are depends on
# other sections (the generations), and with one of those invalid its default would answer in its place.
STRUCTURE_FREE_SECTIONS = ("resources",)


def _build_problems(spec: Any, config: Any, trimmed: bool) -> list[str]:
    """What the pipeline's build refuses (a role's idle workers, a probe of no model) before anything is written.

    Of a ``trimmed`` config (invalid values left out, ``FieldCheck``) only the problems of
    STRUCTURE_FREE_SECTIONS are the user's file's; a DAG error of it is not either.
    """
    try:
        spec.build(config)
    except ConfigError as exc:
        return [problem for problem in exc.problems if not trimmed or _section(problem) in STRUCTURE_FREE_SECTIONS]
    except PipelineError:
        if trimmed:
            return []
        raise
    return []


def _section(problem: str) -> str:
    """The top section of a ``key: message`` problem's key (`resources` of `resources.train.workers: ...`)."""
    return re.split(r"[.\[]", problem.split(":", 1)[0].strip(), maxsplit=1)[0]


ROUNDS = 8  # leaving out invalid values may let a section's defaults meet a check of their own: a few tries


@dataclass(frozen=True)
class FieldCheck:
    """The field checks of a file: their problems, and the file and config with the invalid values left out.

    ``config`` is the file validated without the values that failed (their defaults in their place), so
    the later checks can run on the sections that validated; None when the file fails even so (a check
    across sections blaming no key of the file, a required key missing). ``left_out``: the dotted keys left out.
    """

    data: dict[str, Any]
    config: Any
    problems: list[str]
    left_out: tuple[str, ...] = ()

    def failed_keys(self) -> set[str]:
        """The dotted keys with a field error, and those left out for it."""
        return {*self.left_out, *(problem.split(":", 1)[0].strip() for problem in self.problems)} - {""}

    def failed(self, *sections: str) -> bool:
        """Whether any of ``sections`` has a field error."""
        return any(_section(key) in sections for key in self.failed_keys())

    def independent(self, problem: str) -> bool:
        """Whether a later check's ``problem`` is about a section that validated and names no value left out:
        else it may be about a default standing in for the user's value, not about the file."""
        return not self.failed(_section(problem)) and not any(_names(problem, key) for key in self.failed_keys())


def field_check(model: type, data: dict[str, Any], path: str) -> FieldCheck:
    """Validate ``data``; on field errors or a failed check across sections, validate it again without the
    values that failed (``FieldCheck``), each such check's problems kept where they hold (``_holds_without``).

    Why the checks across sections too: a file failing one (`fitnets.hint_layer: foo`) gave no config for the
    later checks, so its idle workers or bad class order showed only once the hint layer was fixed.
    """
    try:
        return FieldCheck(data, validate_config(model, data, source=path), [])
    except ConfigError as exc:
        problems = exc.problems
    trimmed, left_out = copy.deepcopy(data), []
    for _ in range(ROUNDS):
        if not isinstance(trimmed, dict):
            break
        try:
            return FieldCheck(trimmed, model.model_validate(trimmed), _unique(problems), tuple(left_out))
        except ValidationError as exc:
            keys = [_present_key(trimmed, error["loc"]) for error in exc.errors(include_url=False)]
        if not any(keys):  # a check across sections failed: leave out the key each of its problems blames
            across = _across_sections(model, trimmed, path)
            problems += [problem for problem in across if _holds_without(problem, tuple(left_out), model)]
            keys = [key for key in (_blamed_key(trimmed, problem) for problem in across) if key]
            if not keys:
                return FieldCheck(data, None, _unique(problems), tuple(left_out))
        if not all(keys):  # a problem of the file as a whole (a required key missing): nothing to leave out
            break
        for key in keys:
            _leave_out(trimmed, key)
            left_out.append(".".join(map(str, key)))  # a key YAML read as a number: 1
    return FieldCheck(data, None, _unique(problems))


def _unique(problems: list[str]) -> list[str]:
    """``problems`` in order, each once."""
    return list(dict.fromkeys(problems))


def _across_sections(model: type, trimmed: dict[str, Any], path: str) -> list[str]:
    """The problems of the checks across sections (``fitnets.hint_layer: 'resnet18' has no hint layer 'foo'``)
    that the file without its invalid values fails.

    Why: those checks run only once every field is valid, so a file with a field error and a wrong hint
    layer showed the field error alone, and the user met the other after fixing it.
    """
    try:
        validate_config(model, trimmed, source=path)
    except ConfigError as exc:
        return exc.problems
    return []


def _blamed_key(data: dict[str, Any], problem: str) -> tuple[str, ...]:
    """The key of ``data`` a check across sections' ``problem`` blames: the first dotted key it names that the
    file still has (`lwf.old_classes` of `lwf.old_classes [5, 6] and data.classes [...] share classes`, then
    `data.classes` once the old classes' default shares them too); () when it names none.

    Leaving that value out lets the file validate, so the later checks run on the rest of it.
    """
    for match in re.finditer(r"(?<![\w.'])[A-Za-z_]\w*(?:\.\w+)+", problem):
        key = tuple(match.group().split("."))
        if _present_key(data, key) == key:
            return key
    return ()


def _holds_without(problem: str, left_out: tuple[str, ...], model: type) -> bool:
    """Whether a check across sections' ``problem`` is the file's own, not one of a default standing in for a
    value left out: it names no key left out, and every key left out is in a section whose keys it names.

    Why the second rule: such a check names the keys it compares, but may read other sections unnamed (the
    teacher's layers come from `model.name`, shown as 'resnet18'); with a value of such a section left out,
    its default might be what the check judged.
    """
    if any(_names(problem, key) for key in left_out):
        return False
    sections = tuple(getattr(model, "model_fields", {}))
    named_sections = {section for section in sections if re.search(rf"(?<![\w.]){section}\.\w", problem)}
    return all(_section(key) in named_sections for key in left_out)


def _names(problem: str, key: str) -> bool:
    """Whether ``problem`` names the dotted ``key`` or a key below it (`data` in `data.classes ...`).

    A word inside a path is no key: `train/<class>/<image>` (an image folder's layout, in `data.root`'s problem)
    and `g00/train` (a stage) do not name the `train` section. Why: with `train` left out for its warm-up, the
    missing `data.root` of an image folder was withheld as if it were about `train`, and the user met it only
    after fixing the warm-up (a CIFAR root's problem, naming no folder, was shown beside it).
    """
    return re.search(rf"(?<![\w./]){re.escape(key)}(?![\w/])", problem) is not None


def _present_key(data: dict[str, Any], loc: tuple[Any, ...]) -> tuple[str, ...]:
    """The deepest key of ``data`` on an error's path (a list's key, not one of its items; pydantic's union
    tags skipped); () when the path names no key of the file."""
    key: list[str] = []
    value: Any = data
    for part in loc:
        if not isinstance(value, dict):
            break
        if part in value:
            key.append(part)
            value = value[part]
    return tuple(key)


def _leave_out(data: dict[str, Any], key: tuple[str, ...]) -> None:
    """Remove ``key`` (a path of dict keys) from ``data``, if it is still there."""
    *sections, last = key
    for section in sections:
        data = data.get(section)
        if not isinstance(data, dict):
            return
    data.pop(last, None)


DATA_URI = "data.uri"  # the setting naming a dataset's storage by URI (a sharded dataset: s3://BUCKET/PREFIX)


def data_problems(spec: PipelineSpec, config: Any) -> list[str]:
    """The pipeline's preflight, with storage of the data that refused the credentials called so (``refused_data``).

    Why: the dataset code, which imports nothing of the orchestrator, says "cannot reach this storage" of
    every failure to read it; a `data.uri` on an S3 server that refused the keys read as a network problem.
    """
    problems = list(spec.preflight(config))
    about_uri = [problem for problem in problems if problem.startswith(f"{DATA_URI}:")]
    refused = refused_data(spec, config) if about_uri else None
    return problems if refused is None else [refused if p in about_uri else p for p in problems]


def refused_data(spec: PipelineSpec, config: Any) -> str | None:
    """``data.uri: access to the store URI was denied (...)`` when the data's storage refuses the credentials.

    The storage is asked again (the data's pins read its manifest) for the error itself, which the preflight's
    lines no longer carry, and judged by the classifier of every store message (``store_fault``).
    """
    uri = dotted_value(config, DATA_URI)
    if spec.data is None or not isinstance(uri, str) or "://" not in uri:
        return None
    try:
        spec.data.pins(config)
    except (OSError, ValueError) as exc:
        if store_fault(exc) is StoreFault.DENIED:
            return f"{DATA_URI}: {store_failure(uri, exc)}"
    return None


def _by_number(spec: Any, path: str, data: dict[str, Any], config: Any) -> tuple[dict[str, Any], Any]:
    """The file and config with what they name by name (``data.classes: [cat, dog]``) as numbers (DataSpec.by_number)."""
    try:
        numbers = spec.data.by_number(config) if spec.data is not None else {}
    except ValueError as exc:
        raise ConfigError([str(exc)], path) from exc
    if not numbers:
        return data, config
    logging.getLogger("relay").info("class names as numbers: %s", ", ".join(f"{k}={v}" for k, v in numbers.items()))
    data = apply_overrides(data, numbers)
    return data, validate_config(spec.config_model, data, source=path)


def dotted_value(config: Any, key: str) -> Any:
    """The value at a dotted key (``data.root_digest``) of a validated config."""
    value = config
    for part in key.split("."):
        value = getattr(value, part, None)
    return value
