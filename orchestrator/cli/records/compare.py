"""`relay diff RUN_A RUN_B`: how two runs of the artifact store differ, read from their run records (not MLflow).

Why: comparing two runs meant `diff`ing their config.yaml files by hand (every key of a resolved
config, and the lines that only say where each run lived) or MLflow's compare view, which shows
neither the overrides a run was started with nor the code versions its stages ran. The records
(``runs/RUN_ID/``: config.yaml, command.json, ledger.json) hold all of it, so this needs no tracking
server. A Tune trial keeps no config of its own: its config is rebuilt from its sweep's
(``trials.trial_record``).

Keys that only name where a run lived (``LOCATION_KEYS``: its workspace, artifact store and tracking
store) are left out unless ``--locations`` is given: a run copied to another machine, or two runs in
two workspaces, have the same configuration. The command exits 0 whether the runs differ or not
(exit 1 means a failure in Relay); 2 when a run is not in the store.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.cli.common import add_artifact_uri, add_workspace, pipelines_of, store_of, store_option
from orchestrator.cli.records.run_status import read_view, run_status
from orchestrator.cli.records.runs import headline_metric, result_stages, run_ids
from orchestrator.cli.records.trials import pipeline_kind, trial_kind, trial_record
from orchestrator.config import RunSettings, dotted, resolve_workspace, validate_config
from orchestrator.config.values import name_problem
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, RunStatus, read_command_record, record_path
from orchestrator.errors import ArtifactError, ConfigError
from orchestrator.registry import PipelineSpec
from orchestrator.tracking.report import text_table
from orchestrator.yaml_input import yaml_mapping

DATA_DIGEST_KEYS = ("data.digest", "data.root_digest")  # what `relay run` pins of the data it read (DataSpec.pins)
LOCATION_KEYS = ("run.workspace", "run.artifact_uri", "tracking.uri")  # where a run lived, not how it ran
MISSING = "(not set)"  # a key one run's config has and the other's lacks (an older record, another pipeline)
LONGEST_VALUE = 60  # characters of a value shown in a cell; longer ones (a tune space) are cut
SHORT_VERSION = 12  # characters of a code version shown, as `relay run` logs them


@dataclass
class RunRecord:
    """What `relay diff` reads of one run: its config as dotted keys, its command, code versions and results."""

    run_id: str
    config: dict[str, Any]  # dotted key -> value; {} when the config cannot be read
    overrides: list[str] | None  # None: no command record (a Tune trial, an older record)
    code: str | dict[str, str] | None  # the ledger's code_version: one for the run, or one per module
    stage_names: list[str] = field(default_factory=list)
    stage_modules: dict[str, list[str]] = field(default_factory=dict)  # module -> the stages of it the run ran
    headline: str | None = None  # `<role>/<metric>`, the pipeline's first summary metric
    per_generation: dict[int, float] = field(default_factory=dict)  # generation -> best headline value
    problem: str | None = None  # why the config could not be read
    status: RunStatus = RunStatus.FINISHED  # as `relay runs` shows it: why a generation has no value


def cmd_diff(args: argparse.Namespace) -> int:
    store = store_of(args)
    sweeps = resolve_workspace(RunSettings(workspace=args.workspace)) / "tune"
    check_run_ids(store, [args.run_a, args.run_b])
    pipelines = pipelines_of(args)
    first, second = (read_record(store, run_id, pipelines, sweeps) for run_id in (args.run_a, args.run_b))
    print("\n\n".join(diff_sections(first, second, args.locations)))
    return 0


def check_run_ids(store: ArtifactStore, given: list[str]) -> None:
    """Refuse (exit 2) a run id that is not a safe name or that the store holds no record of, each named once."""
    known = run_ids(store)
    problems = []
    for run_id in dict.fromkeys(given):
        unsafe = name_problem(run_id, "run id")
        if unsafe is not None:
            problems.append(f"run_id: {unsafe}")
        elif run_id not in known:
            problems.append(
                f"run_id: no run {run_id!r} in the artifact store {store.uri}; "
                f"`relay runs{store_option(store.uri)}` lists its runs, or pass the store the run wrote to "
                "(--workspace, --artifact-uri or RELAY_ARTIFACT_URI)"
            )
    if problems:
        raise ConfigError(problems, "the command line")


def read_record(store: ArtifactStore, run_id: str, pipelines: Any, sweeps: Path | None) -> RunRecord:
    """Run ``run_id``'s record as `relay diff` compares it; a part that cannot be read is left empty, and said."""
    config, problem = config_of(store, run_id, pipelines, sweeps)
    ledger = read_view(store, run_id).view
    raw_code = _ledger_code(store, run_id)
    kind = pipeline_kind(store, run_id) or trial_kind(sweeps, run_id, store)
    spec = pipelines.get(kind) if kind else None
    headline = headline_metric(spec)
    stage_names = list(ledger.stages) if ledger else []
    return RunRecord(
        run_id=run_id,
        config=dotted(config),
        overrides=_overrides(store, run_id),
        code=raw_code,
        stage_names=stage_names,
        stage_modules=stage_modules(spec, config, stage_names),
        headline=headline,
        per_generation=best_per_generation(headline, ledger.stages if ledger else {}, spec),
        problem=problem,
        status=run_status(store, run_id),
    )


def config_of(
    store: ArtifactStore, run_id: str, pipelines: Any, sweeps: Path | None
) -> tuple[dict[str, Any], str | None]:
    """The run's resolved config as saved (a trial's: rebuilt from its sweep's), and why not when it cannot be read."""
    relative = record_path(run_id, CONFIG_FILE)
    try:
        text = store.read_record(relative)
        if text is not None:
            return yaml_mapping(text.decode(), store.location(relative)), None
        trial = trial_record(sweeps, run_id, pipelines, store)
    except (ArtifactError, ConfigError, UnicodeDecodeError) as exc:
        return {}, f"{relative} cannot be read: {exc}"
    if trial is None:
        return {}, f"{run_id} keeps no config.yaml, and no sweep config of it is found here"
    return trial[1].model_dump(mode="json"), None


def stage_modules(spec: PipelineSpec | None, config: Mapping[str, Any], ran: list[str]) -> dict[str, list[str]]:
    """Each stage module of the run and the stages of it the run's ledger holds, from the DAG its recorded config
    builds (as `relay resume` builds it); {} when the pipeline is not installed here or the config no longer builds.

    Why: the ledger records a code version per stage module, and the DAG says which module each stage's
    function is in (the module the runner takes its code version from). The stages were found by a naming
    rule, a module's last name as a stage's role (`pipelines.stages.train` runs g00/train), which a plug-in's
    modules need not follow: `relay diff` showed `-` for them.
    """
    if spec is None or not config:
        return {}
    try:
        dag = spec.build(validate_config(spec.config_model, config))
    except Exception:  # a plug-in's build is its own code, and an unreadable part of a diff is left empty, not fatal
        return {}
    found: dict[str, list[str]] = {}
    for stage in dag.stages:
        if stage.name in ran:
            found.setdefault(getattr(stage.fn, "__module__", ""), []).append(stage.name)
    return found


def _ledger_code(store: ArtifactStore, run_id: str) -> str | dict[str, str] | None:
    """The ledger's ``code_version`` (LedgerView does not keep it); None when there is none or it is not readable."""
    try:
        data = json.loads(store.read_record(record_path(run_id, "ledger.json")) or b"{}")
    except (ArtifactError, ValueError):
        return None
    code = data.get("code_version") if isinstance(data, dict) else None
    if isinstance(code, dict):
        return {str(module): str(version) for module, version in code.items()}
    return code if isinstance(code, str) else None


def _overrides(store: ArtifactStore, run_id: str) -> list[str] | None:
    """The `key=value` overrides the run was started with (command.json); None when it has no command record."""
    try:
        command = read_command_record(store, run_id)
    except ArtifactError:
        return None
    overrides = command.get("overrides")
    return [str(item) for item in overrides] if isinstance(overrides, list) else None


def best_per_generation(headline: str | None, stages: Mapping[str, Any], spec: PipelineSpec | None) -> dict[int, float]:
    """The headline metric's best value in each generation, from the ledger's stage metrics (no MLflow)."""
    if headline is None or "/" not in headline:
        return {}
    role, metric = headline.split("/", 1)
    found: dict[int, float] = {}
    for name, entry in result_stages(stages, spec).items():
        value = entry.metrics.get(metric)
        if name.rsplit("/", 1)[-1] == role and entry.generation is not None and value is not None:
            found[entry.generation] = max(value, found.get(entry.generation, value))
    return found


def diff_sections(first: RunRecord, second: RunRecord, locations: bool) -> list[str]:
    """The blocks `relay diff` prints: config keys, overrides, code versions, headline metric per generation."""
    sections = [config_section(first, second, locations), overrides_section(first, second)]
    sections.append(data_section(first, second) + "\n" + code_section(first, second))
    metrics = metrics_section(first, second)
    return sections + ([metrics] if metrics else [])


def config_section(first: RunRecord, second: RunRecord, locations: bool) -> str:
    """The resolved config keys whose values differ, one a line; location keys only with ``--locations``."""
    unreadable = [f"{record.run_id}: {record.problem}" for record in (first, second) if record.problem]
    differing = [
        key
        for key in sorted(first.config.keys() | second.config.keys())
        if first.config.get(key, MISSING) != second.config.get(key, MISSING)
    ]
    hidden = [key for key in differing if key in LOCATION_KEYS and not locations]
    shown = differing_rows([key for key in differing if key not in hidden], first.config, second.config)
    if shown:
        body = [[key, _cell(first.config, key), _cell(second.config, key)] for key in shown]
        lines = [f"config: {len(shown)} key(s) differ", text_table(["key", first.run_id, second.run_id], body)]
    else:
        lines = ["config: the same"]
    if hidden:
        lines.append(f"(left out, where each run lived: {', '.join(hidden)}; --locations shows them)")
    return "\n".join(lines + unreadable)


def differing_rows(keys: list[str], first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """The rows of the differing dotted ``keys``: each key, but a section only one run's config holds keys of is
    one row (``tune``), not a row per key under it.

    Why: two runs of different pipelines (one with a `tune:` section, one with `tune: null`) showed some
    thirty ``tune.space.*`` rows of nulls against "(not set)", beside a ``tune`` row of "(not set)" against null.
    """
    return list(dict.fromkeys(_section_of(key, first, second) for key in keys))


def _section_of(key: str, first: Mapping[str, Any], second: Mapping[str, Any]) -> str:
    """The shortest section above ``key`` that only one config holds keys of, else ``key`` itself."""
    parts = key.split(".")
    for depth in range(1, len(parts)):
        section = ".".join(parts[:depth])
        if not (_holds(first, section) and _holds(second, section)):
            return section
    return key


def _holds(config: Mapping[str, Any], section: str) -> bool:
    """Whether the dotted ``config`` has keys under ``section`` (it is a mapping there, not unset, null or {})."""
    return any(key.startswith(section + ".") for key in config)


def _nested(config: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The keys under ``section`` of a dotted config, nested again, as the config file holds them."""
    nested: dict[str, Any] = {}
    for key, value in config.items():
        if key.startswith(section + "."):
            *parents, leaf = key[len(section) + 1 :].split(".")
            place = nested
            for parent in parents:
                place = place.setdefault(parent, {})
            place[leaf] = value
    return nested


def _cell(config: Mapping[str, Any], key: str) -> str:
    if key in config:
        value = config[key]
    elif _holds(config, key):
        value = _nested(config, key)
    else:
        return MISSING
    text = "null" if value is None else value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= LONGEST_VALUE else text[: LONGEST_VALUE - 3] + "..."


def overrides_section(first: RunRecord, second: RunRecord) -> str:
    """The overrides each run was started with (command.json), as typed after the config file."""
    lines = ["overrides (command.json):"]
    for record in (first, second):
        if record.overrides is None:
            said = "no command record (a Tune trial, or a record older than command.json)"
        else:
            said = " ".join(record.overrides) or "none"
        lines.append(f"  {record.run_id}: {said}")
    return "\n".join(lines)


def data_section(first: RunRecord, second: RunRecord) -> str:
    """Whether the runs read the same data, by the digests `relay run` pinned in their configs (DATA_DIGEST_KEYS)."""
    pinned = [
        key for key in DATA_DIGEST_KEYS if first.config.get(key) is not None or second.config.get(key) is not None
    ]
    if not pinned:
        return "data digests: none recorded (a built-in dataset, chosen by its data.* keys)"
    differing = [key for key in pinned if first.config.get(key) != second.config.get(key)]
    if not differing:
        return f"data digests: the same ({', '.join(f'{key} {_short(first.config[key])}' for key in pinned)})"
    said = [f"{key} {_short(first.config.get(key))} vs {_short(second.config.get(key))}" for key in differing]
    return f"data digests: differ ({'; '.join(said)})"


def code_section(first: RunRecord, second: RunRecord) -> str:
    """Whether the stages ran the same code: the ledgers' code versions, per module where they record them."""
    if first.code is None or second.code is None:
        missing = ", ".join(record.run_id for record in (first, second) if record.code is None)
        return f"code versions: not recorded for {missing} (no ledger yet)"
    if isinstance(first.code, str) or isinstance(second.code, str):
        if first.code == second.code:
            return "code versions: the same"
        return f"code versions: differ ({_short(first.code)} vs {_short(second.code)})"
    modules = sorted(first.code.keys() | second.code.keys())
    differing = [module for module in modules if first.code.get(module) != second.code.get(module)]
    if not differing:
        return f"code versions: the same ({len(modules)} module(s))"
    body = [
        [
            module,
            ", ".join(_stages_of(module, first, second)) or "-",
            _short(first.code.get(module)),
            _short(second.code.get(module)),
        ]
        for module in differing
    ]
    headers = ["module", "stages", first.run_id, second.run_id]
    return f"code versions: {len(differing)} of {len(modules)} module(s) differ\n" + text_table(headers, body)


def _stages_of(module: str, first: RunRecord, second: RunRecord) -> list[str]:
    """The stages of either run whose function is in ``module`` (``stage_modules``).

    A run whose DAG could not be built again here (its pipeline not installed) knows no stage's module:
    its stages are matched by name, a module's last name as a stage's role (`pipelines.stages.train` runs
    g00/train, g01/train ...), which Relay's own modules follow.
    """
    found = [*first.stage_modules.get(module, []), *second.stage_modules.get(module, [])]
    if not found:
        role = module.rsplit(".", 1)[-1]
        found = [
            name
            for record in (first, second)
            if not record.stage_modules
            for name in record.stage_names
            if name.rsplit("/", 1)[-1] == role
        ]
    return sorted(set(found))


def _short(version: Any) -> str:
    return MISSING if version is None else str(version)[:SHORT_VERSION]


def metrics_section(first: RunRecord, second: RunRecord) -> str | None:
    """Each run's best headline metric per generation, side by side, from the ledgers; None when neither has one.

    A generation a run has no value for shows the run's status where it did not finish (``- (STOPPED)``):
    a bare ``-`` read the same for a run stopped before that generation and one that never has it.
    """
    if not (first.per_generation or second.per_generation):
        return None
    generations = sorted(first.per_generation.keys() | second.per_generation.keys())
    body = [
        [str(g), *(_value(record.per_generation.get(g), record.status) for record in (first, second))]
        for g in generations
    ]
    names = dict.fromkeys(record.headline for record in (first, second) if record.headline)
    title = f"{' / '.join(names)} per generation (from the ledgers):"
    return title + "\n" + text_table(["generation", first.run_id, second.run_id], body)


def _value(value: float | None, status: RunStatus = RunStatus.FINISHED) -> str:
    if value is not None:
        return f"{value:.4f}"
    return "-" if status is RunStatus.FINISHED else f"- ({status})"


def register(commands: Any) -> None:
    about = (
        "how two runs differ, from their run records: the resolved config keys, the overrides each was "
        "started with, the stages' code versions and the headline metric per generation"
    )
    parser = commands.add_parser("diff", help=about, description=about)
    parser.add_argument("run_a", metavar="RUN_A", help="a run id `relay runs` lists")
    parser.add_argument("run_b", metavar="RUN_B", help="another run id `relay runs` lists")
    parser.add_argument(
        "--locations",
        action="store_true",
        help="also show " + ", ".join(LOCATION_KEYS) + " (where each run lived), left out by default",
    )
    add_workspace(parser)
    add_artifact_uri(parser)
    parser.set_defaults(handler=cmd_diff)
