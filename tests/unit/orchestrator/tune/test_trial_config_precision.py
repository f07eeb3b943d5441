"""A trial's config read back from its sweep's files holds the values it ran with, to the last digit.

`relay diff` of a sweep's best trial and its best.yaml rerun said `crest.t_min 0.78796214352` vs
`0.7879621435201636`: trials.json, which a trial's config is rebuilt from, rounded every value to
12 significant digits, while best.yaml held all of them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from orchestrator.cli.records.compare import config_of
from orchestrator.cli.records.trials import trial_values
from orchestrator.cli.sweeps.sweep_folder import SWEEP_CONFIG
from orchestrator.cli.sweeps.sweep_results import write_sweep_outputs
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.tune.trial_rows import TrialRow
from orchestrator.tune.trials_table import trial_records
from pipelines.registry import PIPELINES
from tests.unit.orchestrator.tune.test_tune_config import plan, smoke_data

SAMPLED = {"crest.t_min": 0.7879621435201636, "train.lr": 0.081800428238207}
SPACE = {"crest.t_min": {"uniform": [0.3, 0.9]}, "train.lr": {"loguniform": [0.01, 0.1]}}


def sweep_folder(tmp_path: Path, values: dict) -> tuple[Path, str]:
    """A finished sweep's folder as `relay tune` leaves it: its config, trials.json/csv and best.yaml."""
    data = smoke_data(space=SPACE)
    sweep = plan(data, output=tmp_path / "sweeps" / "qa")
    folder = Path(sweep.output)
    folder.mkdir(parents=True)
    (folder / SWEEP_CONFIG).write_text(yaml.safe_dump(data, sort_keys=False))
    best = TrialRow("fd89d_00001", "qa-fd89d_00001", values, {0: 0.5, 1: 0.6}, "completed", 0)
    write_sweep_outputs(folder, trial_records([best]), best, sweep)
    return folder, best.run_id


def test_trials_json_keeps_every_digit_of_a_sampled_value(tmp_path: Path) -> None:
    folder, run_id = sweep_folder(tmp_path, SAMPLED)
    [record] = json.loads((folder / "trials.json").read_text())
    assert {key: record[key] for key in SAMPLED} == SAMPLED
    assert trial_values(folder, run_id, SAMPLED) == SAMPLED


def test_a_trials_rebuilt_config_matches_its_best_yaml(tmp_path: Path) -> None:
    folder, run_id = sweep_folder(tmp_path, SAMPLED)
    store = ArtifactStore(str(tmp_path / "ws" / "artifacts"))  # a trial keeps no config.yaml there
    config, problem = config_of(store, run_id, PIPELINES, tmp_path / "sweeps")
    assert problem is None
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert (config["crest"]["t_min"], config["train"]["lr"]) == (best["crest"]["t_min"], best["train"]["lr"])
    assert config["crest"]["t_min"] == SAMPLED["crest.t_min"]


def test_trials_csv_still_shows_values_readably(tmp_path: Path) -> None:
    """trials.csv feeds no config back: PBT's 0.2 * 0.8 still reads 0.16 there, and a sample 12 digits."""
    folder, _ = sweep_folder(tmp_path, {**SAMPLED, "train.lr": 0.2 * 0.8})
    with (folder / "trials.csv").open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["train.lr"], row["crest.t_min"]) == ("0.16", "0.78796214352")
    [record] = json.loads((folder / "trials.json").read_text())
    assert record["train.lr"] == 0.2 * 0.8


def test_an_older_rounded_trials_json_still_reads(tmp_path: Path) -> None:
    folder, run_id = sweep_folder(tmp_path, SAMPLED)
    rounded = {"crest.t_min": 0.78796214352, "train.lr": 0.0818004282382}
    [record] = json.loads((folder / "trials.json").read_text())
    (folder / "trials.json").write_text(json.dumps([{**record, **rounded}], indent=2))
    assert trial_values(folder, run_id, SAMPLED) == rounded
