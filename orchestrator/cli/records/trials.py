"""A Tune trial read back as a run: its sweep, the config it ran with, how it ended, why `relay resume` refuses it.

A trial keeps only a ledger (and its outputs, by fingerprint), no config of its own, so what a
run's config says (its pipeline, its `tracking:` settings) is read, for a trial, from the config its
sweep saved (the sweep folder the trial recorded, else WORKSPACE/tune/SWEEP/sweep-config.yaml), and
how it ended from its sweep's trials.json. Apart from the listing because `relay resume`, `relay
diff`, `relay delete`, `relay generations` and the Python API find a trial's config the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.cli.common import Pipelines
from orchestrator.cli.records.run_status import run_status
from orchestrator.cli.sweeps.sweep_folder import SWEEP_CONFIG
from orchestrator.config import apply_overrides, validate_config
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.ledger import CONFIG_FILE, LEDGER_FILE, RunStatus, record_path
from orchestrator.errors import ArtifactError, ConfigError
from orchestrator.registry import PipelineSpec, get_pipeline
from orchestrator.tune.plan import SWEEP_RECORD
from orchestrator.yaml_input import yaml_mapping

TRIALS_JSON = "trials.json"  # a finished sweep's trials (`relay tune` writes it beside its config): each one's values


def pipeline_kind(store: ArtifactStore, run_id: str) -> str | None:
    """The `pipeline:` of the run's saved config (None for a Tune trial, which keeps no config of its own)."""
    relative = record_path(run_id, CONFIG_FILE)
    try:
        return _kind_of(store.read_record(relative), relative)
    except ArtifactError:
        return None


def trial_kind(sweeps: Path | None, run_id: str, store: ArtifactStore | None = None) -> str | None:
    """A Tune trial's `pipeline:`, from its sweep record, else the config its sweep saved; None when neither is found.

    A trial keeps only a ledger, whose `pipeline` is the config's `name` (`smoke`), not the kind
    (`crest`) a `relay run` shows.
    """
    recorded = trial_sweep(store, run_id).get("pipeline") if store is not None else None
    if isinstance(recorded, str) and recorded:
        return recorded
    path = sweep_config_of(sweeps, run_id, store)
    try:
        return None if path is None else _kind_of(path.read_bytes(), str(path))
    except OSError:  # no such sweep here
        return None


def trial_sweep(store: ArtifactStore, run_id: str) -> dict[str, Any]:
    """What trial ``run_id`` recorded of its sweep (its name, folder and pipeline kind); {} for an older trial
    or a run that is not a trial, and when the record cannot be read."""
    try:
        data = json.loads(store.read_record(record_path(run_id, SWEEP_RECORD)) or b"{}")
    except (ArtifactError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ended_in_sweep(store: ArtifactStore, run_id: str) -> str | None:
    """How trial ``run_id`` ended as its sweep's trials.json says (completed, stopped early, ...); None when unknown.

    Why the sweep's word: a trial's ledger reads STOPPED both when its scheduler stopped it and when
    its sweep's driver was killed between two generations, and only the second is continued by
    `relay tune --resume`. trials.json is written when the sweep ends, in the folder the trial recorded.
    """
    folder = trial_sweep(store, run_id).get("folder")
    if not isinstance(folder, str) or not folder:
        return None
    try:
        records = json.loads((Path(folder) / TRIALS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = (
        [r for r in records if isinstance(r, dict) and r.get("run_id") == run_id] if isinstance(records, list) else []
    )
    status = found[0].get("status") if found else None
    return status if isinstance(status, str) else None


def trial_resume_problem(
    store: ArtifactStore, run_id: str, sweeps: Path | None = None, options: str = ""
) -> str | None:
    """Why `relay resume` cannot take run ``run_id``: it is a Tune trial (a ledger, no config of its own), and
    what to do instead; None when it is not a trial. ``options``: the store options the command was given, for
    the `relay generations` it names (a trial's tracking store is its workspace's, which `--artifact-uri` alone
    does not name).

    Why: `relay resume` of a trial said there was no such run and to list the runs with `relay runs`,
    which lists it. Its way on is its sweep's, as `relay generations` says (``unfinished_note``).
    """
    if store.read_record(record_path(run_id, CONFIG_FILE)) is not None:
        return None
    if store.read_record(record_path(run_id, LEDGER_FILE)) is None:
        return None
    show = f"`relay generations {run_id}{options}`"
    trial = f"run_id: {run_id} is a trial of a sweep (`relay tune`), which `relay resume` does not continue"
    ended = ended_in_sweep(store, run_id)
    if ended == "stopped early":
        return (
            f"{trial}: its sweep's scheduler stopped it early, so nothing is left to run (`relay tune --resume` "
            f"does not continue a stopped trial either); {show} shows the generations it ran"
        )
    status = run_status(store, run_id)
    if ended == "completed" or status is RunStatus.FINISHED:
        return f"{trial}: it finished, so nothing is left to run; {show} shows its results"
    if status.is_live:
        return f"{trial}: its sweep is still running it (`relay runs` shows its progress)"
    saved = sweep_config_of(sweeps, run_id, store)
    started = f" with the config and overrides it started with (saved in {saved})" if saved and saved.is_file() else ""
    return f"{trial}: `relay tune CONFIG --resume` continues its sweep{started}, this trial included"


def sweep_config_of(sweeps: Path | None, run_id: str, store: ArtifactStore | None = None) -> Path | None:
    """Where the sweep of trial ``run_id`` saved its config; None when the id cannot be a trial's.

    A trial records its sweep's folder (``trial_sweep``), which `--output` may have put anywhere;
    an older trial's run id is `<sweep>-<trial id>`, and its sweep's config is looked for in
    WORKSPACE/tune/<sweep>/.
    """
    folder = trial_sweep(store, run_id).get("folder") if store is not None else None
    if isinstance(folder, str) and folder and (Path(folder) / SWEEP_CONFIG).is_file():
        return Path(folder) / SWEEP_CONFIG
    sweep = run_id.rsplit("-", 1)[0]
    if sweeps is None or sweep in (run_id, ".", ".."):
        return None
    return sweeps / sweep / SWEEP_CONFIG


def trial_record(
    sweeps: Path | None, run_id: str, pipelines: Pipelines, store: ArtifactStore | None = None
) -> tuple[PipelineSpec, Any] | None:
    """The spec and config trial ``run_id`` ran with, from its sweep's saved config; None when that is not here.

    Why: a trial keeps only its ledger (and its outputs, by fingerprint), no config.yaml, so the
    readers of a run's outputs found "no run". Its config is the sweep's without `tune:`, with the
    trial's sampled values (the sweep's trials.json) applied; those values never change the stages
    (`relay tune` checks that), so the DAG is right even before trials.json lists the trial. ``store``: the
    store holding the trial's record, which names its sweep's folder (``sweep_config_of``).
    """
    path = sweep_config_of(sweeps, run_id, store)
    if path is None or not path.is_file():
        return None
    data = yaml_mapping(path.read_text(encoding="utf-8"), str(path))
    space = (data.pop("tune", None) or {}).get("space") or {}
    spec = get_pipeline(data.get("pipeline"), pipelines, source=str(path))
    values = trial_values(path.parent, run_id, space)
    return spec, validate_config(spec.config_model, apply_overrides(data, values), source=str(path))


def trial_values(sweep_folder: Path, run_id: str, space: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the search space trial ``run_id`` ran with, as the sweep's trials.json lists them; {} when it does not."""
    try:
        records = json.loads((sweep_folder / TRIALS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not written until the sweep ends, or damaged
        return {}
    found = (
        [r for r in records if isinstance(r, dict) and r.get("run_id") == run_id] if isinstance(records, list) else []
    )
    return {key: found[0][key] for key in space if key in found[0]} if found else {}


def tracking_settings(store: ArtifactStore, sweeps: Path, run_id: str) -> dict[str, Any] | None:
    """The `tracking:` settings of the run's config (a Tune trial's: its sweep's); None when it cannot be read."""
    relative = record_path(run_id, CONFIG_FILE)
    try:
        config = _mapping_of(store.read_record(relative), relative)
    except ArtifactError:
        config = None
    if config is None:
        path = sweep_config_of(sweeps, run_id, store)
        try:
            config = None if path is None else _mapping_of(path.read_bytes(), str(path))
        except OSError:  # no such sweep here
            config = None
    if config is None:
        return None
    tracking = config.get("tracking")
    return tracking if isinstance(tracking, dict) else {}  # none: the defaults


def _kind_of(text: bytes | None, source: str) -> str | None:
    """The `pipeline:` of a config's YAML text; None when there is none or the text cannot be read."""
    kind = (_mapping_of(text, source) or {}).get("pipeline")
    return kind if isinstance(kind, str) else None


def _mapping_of(text: bytes | None, source: str) -> dict[str, Any] | None:
    """A config's YAML text as a mapping; None when there is none or it cannot be read."""
    try:
        return None if text is None else yaml_mapping(text.decode(), source)
    except (ConfigError, UnicodeDecodeError):
        return None
