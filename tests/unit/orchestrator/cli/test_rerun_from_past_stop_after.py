"""`relay run --rerun-from S --stop-after T` where the run stops before S: exit 2, nothing written.

Before: the run ran up to T, reran nothing, said nothing of it (exit 0), and a later `relay resume` does not carry
--rerun-from, so S took the cache hit: the user believed S had been recomputed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.pipeline_files import load_pipeline_file
from orchestrator.cli.run.execution import check_rerun_before_stop
from orchestrator.errors import ConfigError
from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused


@pytest.mark.parametrize(
    ("rerun_from", "stop_after"),
    [("g01/train", "g00/train"), ("g00/evaluate", "g00/pseudo_label")],  # later; beside it, not needed by it
)
def test_a_rerun_from_a_stage_the_stopped_run_never_reaches_is_refused(
    cwd: Path, capsys, rerun_from: str, stop_after: str
) -> None:
    argv = ["run", str(SMOKE), "run.executor=local", "train.steps=2", "--rerun-from", rerun_from]
    err = refused([*argv, "--stop-after", stop_after], cwd, capsys)
    assert (
        f"relay: 1 problem(s) in the command line:\n  - --rerun-from: {rerun_from} would not run, since --stop-after "
        f"{stop_after} stops the run after {stop_after} and the stages it needs, so nothing would be rerun; stop "
        f"after {rerun_from} or a stage that needs it, or leave --stop-after out"
    ) in err, err


@pytest.mark.parametrize(
    ("rerun_from", "stop_after"),
    [("g00/train", "g00/train"), ("g00/train", "g01/train"), ("data/split", "g00/evaluate"), ("g01/train", None)],
)
def test_a_rerun_from_a_stage_the_run_reaches_is_taken(
    workspace: Path, rerun_from: str, stop_after: str | None
) -> None:
    spec, config, _ = load_pipeline_file(str(SMOKE), ["run.executor=local"])
    pipeline = spec.build(config)
    check_rerun_before_stop(pipeline, rerun_from, stop_after)  # no ConfigError
    with pytest.raises(ConfigError):
        check_rerun_before_stop(pipeline, "g01/evaluate", "g01/train")
