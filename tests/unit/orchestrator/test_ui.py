"""`relay ui` on bad input: an empty workspace, a busy port, a port out of range each get one line, exit 2, nothing starts."""

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
    assert code == cli.EXIT_BAD_INPUT
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
    assert code == cli.EXIT_BAD_INPUT
    assert f"port {port} on 127.0.0.1 is in use" in err and f"--port {port + 1}" in err


def test_a_port_out_of_range_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ui, "run_server", lambda *a: pytest.fail("the server must not start"))
    assert cli.main(["ui", "--workspace", str(tmp_path), "--port", "70000"]) == cli.EXIT_BAD_INPUT
    assert "port 70000 is not a TCP port: pass 1-65535" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_url_points_at_the_newest_pipeline_run_and_server_runs_light(tmp_path, capsys, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "relay")
    tracker.start_pipeline("run-u", "toy", {}, resume=False)
    tracker.end_pipeline("FINISHED")
    started = []
    monkeypatch.setattr(ui, "run_server", lambda uri, port, ready_line="": started.append((uri, port, ready_line)) or 0)
    port = free_port()
    assert cli.main(["ui", "--workspace", str(tmp_path), "--port", str(port)]) == 0
    assert f"http://127.0.0.1:{port}/#/experiments/" not in capsys.readouterr().out  # only once the server answers
    assert f"MLflow UI: http://127.0.0.1:{port}/#/experiments/" in started[0][2]
    url = ui.latest_run_url(uri, "relay", port)
    assert tracker.parent_run_id in url and url.endswith("?workflowType=machine_learning")  # model-training view
    assert [(uri, port)] == [given[:2] for given in started]
    command, env = ui.server_command(uri, port)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--workers") + 1] == "1", "no supervisor restarting slow workers"


def no_server(monkeypatch):
    monkeypatch.setattr(ui, "run_server", lambda *a: pytest.fail("the server must not start"))


def test_an_unknown_experiment_is_named_with_the_ones_there(tmp_path, capsys, monkeypatch):
    """As `relay generations` says it: not "no pipeline runs ... make one", which sends the user the wrong way."""
    no_server(monkeypatch)
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "relay")
    tracker.start_pipeline("run-e", "toy", {}, resume=False)
    tracker.end_pipeline("FINISHED")
    code = cli.main(["ui", "--workspace", str(tmp_path), "--port", str(free_port()), "--experiment", "nosuch"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert "no MLflow experiment 'nosuch'" in err and "experiments there: relay" in err


def test_a_tracking_database_that_is_no_sqlite_file_is_one_message(tmp_path, capsys, monkeypatch):
    no_server(monkeypatch)
    (tmp_path / "mlflow.db").write_text("hello")
    code = cli.main(["ui", "--workspace", str(tmp_path), "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert "Traceback" not in err and "mlflow.db is not an SQLite database" in err and "--workspace:" in err
    assert (tmp_path / "mlflow.db").read_text() == "hello"


def test_a_file_as_workspace_is_refused_as_a_file(tmp_path, capsys, monkeypatch):
    no_server(monkeypatch)
    (tmp_path / "notes").write_text("x")
    code = cli.main(["ui", "--workspace", str(tmp_path / "notes"), "--port", str(free_port())])
    assert code == cli.EXIT_BAD_INPUT
    assert f"--workspace: {tmp_path / 'notes'} is a file, not a folder" in capsys.readouterr().err


def test_a_tracking_uri_mlflow_cannot_open_names_the_variable_that_chose_it(tmp_path, capsys, monkeypatch):
    """$MLFLOW_TRACKING_URI wins over --workspace: the message says which store it opened and what to change."""
    no_server(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuch://x")
    code = cli.main(["ui", "--workspace", str(tmp_path), "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert "$MLFLOW_TRACKING_URI: MLflow has no tracking store for 'nosuch://x'" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []
