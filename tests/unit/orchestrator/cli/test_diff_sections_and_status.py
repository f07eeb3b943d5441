"""`relay diff` of runs whose configs hold different sections, and of a run that did not finish.

Why: two runs of different pipelines (smoke, with a `tune:` section, against crest_digits, with `tune: null`)
read "42 key(s) differ", some thirty of them `tune.space.*` keys of null against "(not set)" beside a `tune`
row of "(not set)" against null; and a STOPPED run's generations showed `-`, the same as a generation a
finished run never had. Real run records: config.yaml, command.json and a real Runner's ledger.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.cli import main
from tests.unit.orchestrator.cli.test_runs_filters_and_diff import SPECS, stopped_toy_run, toy_run

WITH_TUNE = """pipeline: toy
name: toy
seed: 0
train: {lr: 0.5}
tune:
  name: null
  metric: evaluate/score
  space:
    crest.t_min: {grid: null, low: null, high: null}
    train.lr: {grid: null, low: null, high: null}
"""
WITHOUT_TUNE = """pipeline: toy
name: toy
seed: 1
train: {lr: 0.5, steps: 10}
tune: null
crest: {generations: 2, t_min: 0.5}
"""


def diff_of(workspace: Path, capsys, first: str, second: str) -> str:
    assert main(["diff", first, second, "--workspace", str(workspace)], pipelines=SPECS) == 0
    return capsys.readouterr().out


def config_rows(out: str) -> dict[str, list[str]]:
    """The config table's rows by key (the first section, under its header and rule), its cells apart."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.split("\n\n")[0].splitlines()[3:]]
    return {row[0]: row[1:] for row in rows if len(row) == 3}


def test_a_section_one_run_leaves_unset_is_one_row_not_its_keys(tmp_path: Path, capsys) -> None:
    toy_run(tmp_path, "smoke", WITH_TUNE, [])
    toy_run(tmp_path, "crest", WITHOUT_TUNE, [])

    out = diff_of(tmp_path, capsys, "smoke", "crest")

    assert out.splitlines()[0] == "config: 4 key(s) differ", out
    rows = config_rows(out)
    assert list(rows) == ["crest", "seed", "train.steps", "tune"]
    assert rows["tune"][0].startswith('{"name":null,"metric":"evaluate/score","space":') and rows["tune"][1] == "null"
    assert rows["crest"] == ["(not set)", '{"generations":2,"t_min":0.5}']
    assert rows["train.steps"] == ["(not set)", "10"], "a key of a section both runs hold stays a row of its own"
    assert "tune." not in out.split("\n\n")[0]


def test_the_same_sections_differing_in_one_key_keep_their_rows(tmp_path: Path, capsys) -> None:
    toy_run(tmp_path, "ra", WITH_TUNE, [])
    toy_run(tmp_path, "rb", WITH_TUNE.replace("crest.t_min: {grid: null", "crest.t_min: {grid: [0.1, 0.2]"), [])

    out = diff_of(tmp_path, capsys, "ra", "rb")

    assert out.splitlines()[0] == "config: 1 key(s) differ", out
    assert config_rows(out) == {"tune.space.crest.t_min.grid": ["null", "[0.1,0.2]"]}


def test_a_generation_a_stopped_run_has_no_value_for_shows_its_status(tmp_path: Path, capsys) -> None:
    toy_run(tmp_path, "done", "pipeline: toy\nname: toy\n", [])
    stopped_toy_run(tmp_path, "part")

    out = diff_of(tmp_path, capsys, "done", "part")

    scores = out.split("evaluate/score per generation")[1].splitlines()
    assert scores[3].split() == ["0", "6.0000", "-", "(STOPPED)"], out
