"""`relay run` / `relay resume` end their own process (no interpreter teardown); in-process callers get the code."""

from __future__ import annotations

import sys

import pytest

from orchestrator import cli
from orchestrator.cli.run import execution, pipeline


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    found: list[int] = []
    monkeypatch.setattr(cli, "exit_now", found.append)
    monkeypatch.setattr(pipeline, "cmd_run", lambda args: 0)
    monkeypatch.setattr(pipeline, "cmd_resume", lambda args: 1)
    monkeypatch.setattr(pipeline, "cmd_validate", lambda args: 0)
    return found


@pytest.mark.parametrize(("argv", "code"), [(["run", "x.yaml"], 0), (["resume", "some-run"], 1)])
def test_run_and_resume_from_the_command_line_exit_with_their_code(exits, monkeypatch, argv, code) -> None:
    monkeypatch.setattr(sys, "argv", ["relay", *argv])
    cli.main()
    assert exits == [code]


def test_in_process_callers_and_other_commands_get_the_code_back(exits, monkeypatch) -> None:
    assert cli.main(["run", "x.yaml"]) == 0  # tests and benchmarks call main(argv) and go on
    monkeypatch.setattr(sys, "argv", ["relay", "validate", "x.yaml"])
    assert cli.main() == 0
    assert exits == []


def test_mlflows_database_tracebacks_are_left_to_relays_own_line(caplog) -> None:
    """A full disk made MLflow log a SQLAlchemy traceback per failed write; Relay's one-line warning says it."""
    import logging

    from orchestrator.cli import configure_logging

    try:
        configure_logging(verbose=False)
        logging.getLogger("mlflow.store.db.utils").error("(sqlite3.OperationalError) database or disk is full")
        assert "disk is full" not in caplog.text
        configure_logging(verbose=True)
        logging.getLogger("mlflow.store.db.utils").error("(sqlite3.OperationalError) database or disk is full")
        assert "disk is full" in caplog.text
    finally:
        configure_logging(verbose=False)


def test_ctrl_c_before_the_runner_has_the_run_says_how_to_resume_once(tmp_path, caplog) -> None:
    """Ctrl-C while MLflow or Ray started ended a run with exit 130 and no word on how to go on (CI saw it)."""
    from types import SimpleNamespace

    from orchestrator.engine.artifacts import ArtifactStore

    run = SimpleNamespace(run_id="early", store=ArtifactStore(str(tmp_path / "artifacts")))
    with pytest.raises(KeyboardInterrupt), execution.resume_hint_until_the_stages_run(run):
        raise KeyboardInterrupt
    assert "interrupted before the stages started; resume with: relay resume early" in caplog.text
    caplog.clear()
    with pytest.raises(KeyboardInterrupt), execution.resume_hint_until_the_stages_run(run) as handover:
        handover.runner_has_it = True  # from here the Runner says it, with the ledger it wrote
        raise KeyboardInterrupt
    assert "resume" not in caplog.text


def test_a_ctrl_c_just_after_a_new_runs_record_is_written_is_recorded_and_said(tmp_path, caplog) -> None:
    """The record was written before the block that records a Ctrl-C was entered: one landing between the two
    (CI, once) ended the run with exit 130, no word and no ledger. ``execute`` now writes the record inside it."""
    from types import SimpleNamespace

    from orchestrator.engine.artifacts import ArtifactStore
    from orchestrator.engine.ledger import COMMAND_FILE, read_ledger, record_path

    store = ArtifactStore(str(tmp_path / "artifacts"))
    config = SimpleNamespace(tracking=SimpleNamespace(uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))

    def run(run_id: str) -> SimpleNamespace:
        return SimpleNamespace(run_id=run_id, store=store, config=config, stop_after=None, executor=None)

    def recorded_then_ctrl_c() -> None:
        store.write_record(record_path("early", COMMAND_FILE), b"{}")
        raise KeyboardInterrupt

    def ctrl_c_first() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execution.execute(run("early"), resume=False, record=recorded_then_ctrl_c)
    assert "interrupted before the stages started; resume with: relay resume early" in caplog.text
    assert read_ledger(store, "early")["status"] == "INTERRUPTED"
    with pytest.raises(KeyboardInterrupt):
        execution.execute(run("earlier"), resume=False, record=ctrl_c_first)
    assert "interrupted before run earlier was recorded; nothing to resume" in caplog.text
    assert read_ledger(store, "earlier") is None


def test_ctrl_c_after_the_runner_finished_leaves_mlflow_finished_like_the_run_record(
    tmp_path, monkeypatch, capsys, no_store_settings
) -> None:
    """A Ctrl-C while the final table printed closed MLflow's runs KILLED though the run record said FINISHED."""
    from pathlib import Path

    from mlflow import MlflowClient

    from orchestrator.engine.artifacts import ArtifactStore
    from orchestrator.engine.ledger import read_ledger
    from orchestrator.tracking import report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "generation_table", interrupted)
    smoke = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"
    workspace = tmp_path / "ws"
    argv = [
        "run",
        str(smoke),
        "run.executor=local",
        "train.steps=3",
        "crest.generations=1",
        f"run.workspace={workspace}",
    ]
    assert cli.main([*argv, "--run-id", "r1"]) == 130
    assert read_ledger(ArtifactStore(str(workspace / "artifacts")), "r1")["status"] == "FINISHED"
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("relay")
    (parent,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'r1'")
    assert parent.info.status == "FINISHED"
