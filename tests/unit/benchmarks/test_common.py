"""benchmarks/_common.run_cached: a long benchmark stopped half-way picks up where it stopped, and never reuses
runs of a config file that has since changed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
common = importlib.import_module("_common")


def doubled(job: tuple[str, int]) -> dict[str, int]:
    return {"name": job[0], "value": 2 * job[1]}


def test_finished_runs_are_read_back_and_only_new_ones_run(tmp_path):
    cache = tmp_path / "runs.jsonl"
    first = common.run_cached(doubled, [("a", 1), ("b", 2)], 1, cache)
    calls: list[tuple[str, int]] = []

    def counted(job: tuple[str, int]) -> dict[str, int]:
        calls.append(job)
        return doubled(job)

    second = common.run_cached(counted, [("a", 1), ("b", 2), ("c", 3)], 1, cache)
    assert first == [{"name": "a", "value": 2}, {"name": "b", "value": 4}]
    assert second == [*first, {"name": "c", "value": 6}]
    assert calls == [("c", 3)]
    assert len(cache.read_text().splitlines()) == 3


def test_cached_only_runs_nothing_and_returns_what_the_cache_holds(tmp_path):
    cache = tmp_path / "runs.jsonl"
    common.run_cached(doubled, [("a", 1)], 1, cache)
    held = common.run_cached(lambda job: 1 / 0, [("a", 1), ("z", 9)], 1, cache, cached_only=True)
    assert held == [{"name": "a", "value": 2}]


def test_the_key_decides_what_counts_as_the_same_run(tmp_path):
    cache = tmp_path / "runs.jsonl"
    common.run_cached(doubled, [("a", 1)], 1, cache, key_of=lambda job: job[0])
    reused = common.run_cached(lambda job: 1 / 0, [("a", 5)], 1, cache, key_of=lambda job: job[0])
    assert reused == [{"name": "a", "value": 2}]


def test_a_run_keyed_by_its_config_file_runs_again_once_the_file_changes(tmp_path):
    cache, config = tmp_path / "runs.jsonl", tmp_path / "config.yaml"
    config.write_text("train:\n  steps: 300\n")
    calls: list[tuple[str, int]] = []

    def counted(job: tuple[str, int]) -> dict[str, int]:
        calls.append(job)
        return doubled(job)

    def keyed(job: tuple[str, int]) -> list:
        return [*job, common.file_digest(config)]

    common.run_cached(counted, [("a", 1)], 1, cache, key_of=keyed)
    common.run_cached(counted, [("a", 1)], 1, cache, key_of=keyed)
    assert calls == [("a", 1)]  # unchanged file: read back
    config.write_text("train:\n  steps: 900\n")
    common.run_cached(counted, [("a", 1)], 1, cache, key_of=keyed)
    assert calls == [("a", 1), ("a", 1)]  # edited file: run again
