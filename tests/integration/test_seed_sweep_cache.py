"""Two real `relay run`s that differ only in `seed`, in one workspace: the split is reused, training is not.

Why: every stage's fingerprint held the run's seed, so each run of a sweep over `seed` drew the same data split
again (6-11 s each, the same digest for seeds 0, 1 and 2), although `seed` does not change the split
(`data.fold` draws it).
"""

from __future__ import annotations

import pytest

from tests.integration.relay_cli import ROOT, relay, runs_by_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
SHORT = ("run.executor=local", "crest.generations=1", "train.steps=20", "train.report_every=10")


def test_another_seed_reuses_the_split_and_trains_again(tmp_path) -> None:
    for seed in (0, 1):
        result = relay("run", str(SMOKE), *SHORT, f"seed={seed}", "--run-id", f"seed-{seed}", workspace=tmp_path)
        assert result.returncode == 0, result.stderr[-4000:]
    first, second = (runs_by_name(tmp_path, f"seed-{seed}") for seed in (0, 1))
    assert first["data/split"].data.tags["cache_hit"] == "false"
    assert second["data/split"].data.tags["cache_hit"] == "true"
    assert second["data/split"].data.tags["relay.fingerprint"] == first["data/split"].data.tags["relay.fingerprint"]
    for stage in ("g00/train", "g00/evaluate"):
        assert second[stage].data.tags["cache_hit"] == "false"
        assert second[stage].data.tags["relay.fingerprint"] != first[stage].data.tags["relay.fingerprint"]
    assert "skip data/split: cache hit" in result.stderr
