"""Two real smoke runs told apart: `relay runs --overrides/--last/--status` and `relay diff A B` (config keys, overrides,
code versions, headline metric per generation), read from the records the runs left, in fresh processes."""

from __future__ import annotations

import pytest

from tests.integration.relay_cli import ROOT, relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")


def test_two_runs_of_one_pipeline_are_told_apart(tmp_path) -> None:
    workspace = tmp_path / "ws"
    for run_id, overrides in (("ra", ["seed=0"]), ("rb", ["seed=3", "crest.alignment=false"])):
        done = relay(
            "run",
            SMOKE,
            "train.steps=10",
            "crest.generations=1",
            *overrides,
            "run.executor=local",
            "--run-id",
            run_id,
            workspace=workspace,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    plain = relay("runs", workspace=workspace)
    assert plain.returncode == 0
    assert plain.stdout.splitlines()[0].split() == ["run", "pipeline", "status", "generations", "best", "started"]

    newest = relay(
        "runs", "--overrides", "--last", "1", "--status", "finished", "--pipeline", "crest", workspace=workspace
    )
    assert newest.returncode == 0, newest.stderr
    lines = newest.stdout.splitlines()
    assert lines[0].split()[-1] == "overrides" and len(lines) == 3
    assert lines[2].split()[0] == "rb" and lines[2].endswith(
        "  train.steps=10 crest.generations=1 seed=3 crest.alignment..."
    )

    compared = relay("diff", "ra", "rb", workspace=workspace)
    assert compared.returncode == 0, compared.stderr
    rows = [line.split() for line in compared.stdout.splitlines()]
    assert compared.stdout.startswith("config: 2 key(s) differ")
    assert ["seed", "0", "3"] in rows and ["crest.alignment", "true", "false"] in rows
    assert "run.artifact_uri" not in compared.stdout and "tracking.uri" not in compared.stdout
    assert "  rb: train.steps=10 crest.generations=1 seed=3 crest.alignment=false" in compared.stdout
    assert "code versions: " in compared.stdout  # "the same" unless a stage module was edited between the two runs
    metrics = compared.stdout.split("evaluate/balanced_accuracy per generation")[1].splitlines()
    assert metrics[3].split()[0] == "0" and len(metrics[3].split()) == 3

    unknown = relay("diff", "ra", "nope", workspace=workspace)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "no run 'nope'" in unknown.stderr and "relay runs" in unknown.stderr
