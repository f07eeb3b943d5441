"""`relay resume RUN --stop-after STAGE` names a stage the pipeline lacks as such, the run finished or not.

Before the fix: `relay resume FINISHED --stop-after g09/train` said the finished run would be recorded as stopped again,
though the pipeline has no stage g09/train; an unfinished run got "no stage named 'g09/train'; valid stages".
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.cli import main
from orchestrator.engine.ledger import LEDGER_FILE, record_path

SMOKE = str(Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml")


def test_resuming_a_finished_run_to_a_stage_it_lacks_names_the_valid_stages(
    tmp_path: Path, capsys, no_store_settings
) -> None:
    workspace = tmp_path / "ws"
    argv = ["run", SMOKE, "run.executor=local", "train.steps=3", "crest.generations=1", f"run.workspace={workspace}"]
    assert main([*argv, "--run-id", "done"]) == 0
    ledger = workspace / "artifacts" / record_path("done", LEDGER_FILE)
    assert json.loads(ledger.read_bytes())["status"] == "FINISHED"
    before = ledger.read_bytes()
    capsys.readouterr()
    assert main(["resume", "done", "--workspace", str(workspace), "--stop-after", "g09/train"]) == 2
    err = capsys.readouterr().err
    assert "no stage named 'g09/train'; valid stages: data/split, g00/train" in err
    assert "would record it as stopped" not in err
    assert ledger.read_bytes() == before
    assert main(["resume", "done", "--workspace", str(workspace), "--stop-after", "g00/train"]) == 2
    assert "run done has finished, so stopping it after g00/train" in capsys.readouterr().err
