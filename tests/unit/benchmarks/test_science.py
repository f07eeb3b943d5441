"""benchmarks/science.py's method table: the supervised ceiling is what its name says, and --methods picks rows."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.yaml_input import layered

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
science = importlib.import_module("science")

PROTOCOL = ["data.imbalance_ratio=10", "data.labeled_fraction=0.1", "data.holdout_per_class=44"]


def _split_of(overrides: list[str]):
    from pipelines.datasets.catalog import dataset_labels
    from pipelines.split import split_table

    _, config = science._common.load_config(
        science.CONFIG, layered(PROTOCOL, overrides, science.seed_overrides(3, "per-seed"))
    )
    data = config.data.model_dump()
    table = split_table(data, dataset_labels(data))
    return np.asarray(table.column("subset").to_pylist()), np.asarray(table.column("label").to_pylist())


def test_the_ceiling_labels_all_but_one_or_two_training_images_and_trains_without_the_unlabeled_loss():
    table = science.methods(3, 600, compute_matched=False, ceiling=True)
    subsets, labels = _split_of(table[science.CEILING])
    protocol_subsets, protocol_labels = _split_of(table["FixMatch"])
    train = np.isin(subsets, ["labeled", "unlabeled"])
    assert train.sum() == np.isin(protocol_subsets, ["labeled", "unlabeled"]).sum()  # the same training images
    assert 1 <= (subsets == "unlabeled").sum() <= 2  # what ceil(0.99 n) leaves of the classes over 100 images
    assert np.array_equal(labels[subsets == "test"], protocol_labels[protocol_subsets == "test"])
    _, config = science._common.load_config(science.CONFIG, layered(PROTOCOL, table[science.CEILING]))
    assert config.train.lambda_u == 0 and config.crest.generations == 1 and not config.crest.alignment


def test_methods_cuts_the_table_and_names_what_it_does_not_know():
    table = science.methods(3, 600, compute_matched=True, ceiling=True)
    picked = science.chosen_methods(table, "FixMatch, Supervised ceiling")
    assert list(picked) == ["FixMatch", science.CEILING]
    assert science.chosen_methods(table, "") == table
    with pytest.raises(ValueError, match="unknown \\['CReST\\+\\+'\\]"):
        science.chosen_methods(table, "CReST++")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--methods", "CReST++"], "--methods: unknown ['CReST++']"),
        (["--address", "127.0.0.1:6379"], "add --through-relay"),
        (["--workspace", "ws"], "add --through-relay"),
    ],
)
def test_bad_flags_exit_2_with_one_message_and_write_nothing(tmp_path, flags, message):
    name = "science_bad_flags_check"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "science.py"),
            *flags,
            "--name",
            name,
            "--cache",
            str(tmp_path / "c"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (ROOT / "benchmarks" / "results" / f"{name}.json").exists() and not list(tmp_path.iterdir())


def _run(method: str, seed: int, balanced: float, tail: float) -> dict:
    return {"method": method, "seed": seed, "balanced_accuracy": [balanced], "tail_recall": [tail]}


def test_the_verdict_names_the_room_the_ceiling_leaves_above_fixmatch():
    runs = [
        _run("FixMatch", 0, 0.90, 0.80),
        _run("CReST+", 0, 0.94, 0.92),
        _run(science.CEILING, 0, 0.97, 0.94),
    ]
    note = science.verdict(runs)
    assert "+4.0 +- 0.0 balanced" in note and "MISSED" in note
    assert "ceiling is +7.0 balanced, +14.0 tail above FixMatch" in note
    assert "ceiling" not in science.verdict(runs[:2])
