"""A real PBT `relay tune`: a trial PBT cloned reads, everywhere, the scores of the lineage its models come from.

Why: after an exploit the trial went on from the other trial's checkpoint and ran only what its next
report needed, the training stages of earlier generations but not their evaluation. Its ledger,
`relay generations` and its MLflow generation runs kept the scores of its own discarded lineage
(a reviewer's sweep: trials table g00 0.44, `relay generations` 0.1950), beside the copied
lineage's training stages in the same ledger.

Three trials at once, one of which does not learn (lr 1e-6), with a perturbation at every generation.
PBT clones only a trial that has reported while ranked above another and is still running, so a trial
that raced ahead and finished first (it computed the shared data split while the others waited) can
leave no clone: the sweep is run again, in a new workspace, up to SWEEPS times until one is made.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.integration.relay_cli import relay, smoke_sweep

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SWEEP = "pbt-lineage"
GENERATIONS = 3
OVERRIDES = (
    f"crest.generations={GENERATIONS}",
    "train.steps=20",
    "run.num_cpus=4",  # three trials at once on 2 cores: PBT perturbs only among trials running together
    "tracking.log_models=false",
    "tracking.system_metrics=false",
)
SWEEPS = 3  # sweeps tried for one that clones a trial
CLONED = re.compile(r"Cloning trial (\w+) \(score = [-\d.]+\) into trial (\w+)")


def pbt_config(folder: Path) -> Path:
    path = smoke_sweep(folder, SWEEP, [0.05, 0.03, 1e-6])
    data = yaml.safe_load(path.read_text())
    data["tune"].update({"scheduler": "pbt", "perturbation_interval": 1})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def ledger_scores(workspace: Path, run_id: str) -> dict[int, float]:
    """Generation -> balanced accuracy of its evaluate stage, as the trial's ledger holds it."""
    stages = json.loads((workspace / "artifacts" / "runs" / run_id / "ledger.json").read_text())["stages"]
    return {
        g: float(stages[f"g{g:02d}/evaluate"]["metrics"]["balanced_accuracy"])
        for g in range(GENERATIONS)
        if f"g{g:02d}/evaluate" in stages
    }


def generations_scores(workspace: Path, run_id: str) -> dict[int, float]:
    """Generation -> balanced accuracy as `relay generations RUN` prints it (4 decimals)."""
    shown = relay("generations", run_id, workspace=workspace)
    assert shown.returncode == 0, shown.stderr[-2000:]
    rows = [line.split() for line in shown.stdout.splitlines()]
    header = next(row for row in rows if row[:1] == ["generation"])
    column = header.index("balanced_accuracy")
    return {int(row[0]): float(row[column]) for row in rows if row and row[0].isdigit()}


def sweep_that_clones(folder: Path) -> tuple[Path, list[tuple[str, str]]]:
    """The workspace of a PBT sweep that cloned a trial, and its clones as (from, into) trial ids."""
    config, log = pbt_config(folder), ""
    for attempt in range(SWEEPS):
        workspace = folder / f"ws{attempt}"
        done = relay("tune", str(config), *OVERRIDES, workspace=workspace, timeout_s=400)
        assert done.returncode == 0, done.stderr[-4000:]
        log = done.stdout + done.stderr
        clones = CLONED.findall(log)
        if clones:
            return workspace, clones
    pytest.fail(f"PBT cloned no trial in {SWEEPS} sweeps, so the test tests nothing; last sweep's log:\n{log[-4000:]}")


def test_a_cloned_trial_reads_its_lineages_scores_in_its_ledger_and_relay_generations(tmp_path: Path) -> None:
    workspace, clones = sweep_that_clones(tmp_path)

    table = json.loads((workspace / "tune" / SWEEP / "trials.json").read_text())
    assert len(table) == 3 and all(row["status"] == "completed" for row in table)
    for row in table:
        reported = {g: round(row[f"g{g:02d}"], 4) for g in range(GENERATIONS)}  # the lineage: Tune's checkpoint
        ledger = {g: round(value, 4) for g, value in ledger_scores(workspace, row["run_id"]).items()}
        assert ledger == reported, f"{row['trial_id']}'s ledger is not its lineage's (clones: {clones})"
        assert generations_scores(workspace, row["run_id"]) == reported, row["trial_id"]
