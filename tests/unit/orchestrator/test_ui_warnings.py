"""The `mlflow server` that `relay ui` starts keeps Starlette's deprecation warning off the user's console, and
nothing else: the filter is given to a real Python process, which still prints any other warning."""

from __future__ import annotations

import subprocess

from orchestrator import ui

IMPORTS = (
    "import warnings; warnings.warn('a warning the user should see', UserWarning); "
    "import starlette.middleware.wsgi"  # what MLflow's server imports, and Starlette warns about
)


def server_stderr(tmp_path) -> str:
    """What a process started with the server's environment prints on stderr while importing what the server does."""
    command, env = ui.server_command(f"sqlite:///{tmp_path / 'mlflow.db'}", 5000)
    done = subprocess.run([command[0], "-c", IMPORTS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_server_does_not_print_starlette_s_deprecation_warning(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    stderr = server_stderr(tmp_path)
    assert "StarletteDeprecationWarning" not in stderr and "starlette.middleware.wsgi is deprecated" not in stderr
    assert "a warning the user should see" in stderr, "only Starlette's one warning is filtered"


def test_the_user_s_own_warning_filters_still_apply(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONWARNINGS", "error::DeprecationWarning")
    env = ui.server_command(f"sqlite:///{tmp_path / 'mlflow.db'}", 5000)[1]
    assert env["PYTHONWARNINGS"].split(",") == ["error::DeprecationWarning", ui.STARLETTE_WSGI_WARNING]
    assert "StarletteDeprecationWarning" not in server_stderr(tmp_path)
