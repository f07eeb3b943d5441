"""`relay ui` on bad input: an empty workspace and a busy port each get one clear line, and nothing starts."""

import socket

import pytest

from orchestrator import cli, ui
from orchestrator.tracking.mlflow_tracker import MlflowTracker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_empty_workspace_says_there_are_no_runs_and_how_to_make_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ui, "run_server", lambda *a: pytest.fail("the server must not start"))
    code = cli.main(["ui", "--workspace", str(tmp_path), "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert "no runs yet" in err and "relay run pipelines/configs/smoke.yaml" in err
    assert list(tmp_path.iterdir()) == [], "checking must not create a database"


def test_port_in_use_names_the_port_and_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ui, "run_server", lambda *a: pytest.fail("the server must not start"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["ui", "--workspace", str(tmp_path), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert f"port {port} on 127.0.0.1 is in use" in err and f"--port {port + 1}" in err


def test_a_port_out_of_range_is_refused(tmp_path):
    with pytest.raises(ui.RelayError, match="not a TCP port"):
        ui.check(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay", 70000)


def test_url_points_at_the_newest_pipeline_run_and_server_runs_light(tmp_path, capsys, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay")
    tracker.start_pipeline("run-u", "toy", {}, resume=False)
    tracker.end_pipeline("FINISHED")
    started = []
    monkeypatch.setattr(ui, "run_server", lambda uri, port: started.append((uri, port)) or 0)
    port = free_port()
    assert cli.main(["ui", "--workspace", str(tmp_path), "--port", str(port)]) == 0
    assert f"http://127.0.0.1:{port}/#/experiments/" in capsys.readouterr().out
    url = ui.latest_run_url(uri, "relay", port)
    assert tracker.parent_run_id in url and url.endswith("?workflowType=machine_learning")  # model-training view
    assert started == [(uri, port)]
    command, env = ui.server_command(uri, port)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert command[command.index("--host") + 1] == "127.0.0.1"
