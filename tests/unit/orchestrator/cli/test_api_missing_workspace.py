"""The Python API refuses a workspace or artifact store that does not exist, as `relay` does (exit 2 there).

Why: `relay.runs("/typo")` returned ``[]``, read as "no runs yet", while `relay runs --workspace /typo`
exits 2 saying the workspace does not exist; docs/API.md promises the CLI's checks and messages. Each
case calls the API through ``import relay``, then `relay` with the same input: the messages must be
the same, and nothing may be created.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import relay
from tests.unit.orchestrator.cli.test_api_bad_input import cli_message, files


def refused_alike(call, argv: list[str], root: Path, capsys: pytest.CaptureFixture) -> str:
    """``call`` raises relay.InputError with the message `relay ARGV` prints, and neither writes under ``root``."""
    with pytest.raises(relay.InputError) as refused:
        call()
    assert files(root) == {"a", "a/b"}, "the API created something"
    assert str(refused.value) == cli_message(argv, capsys)
    assert files(root) == {"a", "a/b"}, "the CLI created something"
    return str(refused.value)


@pytest.mark.parametrize("as_path", [str, Path], ids=["str", "Path"])
def test_runs_of_a_workspace_that_does_not_exist_is_refused(cwd: Path, no_store_settings, capsys, as_path) -> None:
    missing = cwd / "missing"
    message = refused_alike(
        lambda: relay.runs(as_path(missing)), ["runs", "--workspace", str(missing)], cwd.parents[1], capsys
    )
    assert f"--workspace: the workspace {missing} does not exist: check the path" in message


def test_runs_of_an_artifact_store_that_does_not_exist_is_refused(cwd: Path, no_store_settings, capsys) -> None:
    missing = cwd / "nonexistent-store"
    message = refused_alike(
        lambda: relay.runs(artifact_uri=str(missing)), ["runs", "--artifact-uri", str(missing)], cwd.parents[1], capsys
    )
    assert f"--artifact-uri: the artifact store {missing} does not exist: check the path" in message


@pytest.mark.parametrize(
    ("variable", "said"),
    [
        ("RELAY_WORKSPACE", "$RELAY_WORKSPACE: the workspace {missing} does not exist: check the path"),
        ("RELAY_ARTIFACT_URI", "$RELAY_ARTIFACT_URI: the artifact store {missing} does not exist: check the path"),
    ],
)
def test_runs_of_a_store_set_by_a_variable_that_does_not_exist_is_refused(
    cwd: Path, no_store_settings, monkeypatch, capsys, variable: str, said: str
) -> None:
    missing = cwd / "typo-ws"
    monkeypatch.setenv(variable, str(missing))
    message = refused_alike(relay.runs, ["runs"], cwd.parents[1], capsys)
    assert said.format(missing=missing) in message


def test_runs_of_an_empty_workspace_and_of_the_default_one_not_made_yet_is_no_runs(
    cwd: Path, no_store_settings
) -> None:
    """No mistake to refuse: a workspace no run wrote to yet, and ./relay-workspace before the first run."""
    (cwd / "fresh").mkdir()
    assert relay.runs(cwd / "fresh") == []
    assert relay.runs() == []
    assert files(cwd) == {"fresh"}


IMAGES = np.zeros((1, 1, 16, 16), dtype=np.uint8)
READERS = {  # reader -> the `relay` command that reads the same record
    "generations": (lambda ws: relay.generations("r1", ws), "generations"),
    "resume": (lambda ws: relay.resume("r1", ws), "resume"),
    "artifact": (lambda ws: relay.artifact("r1", "data/split", ws), "resume"),
    "pseudo_labels": (lambda ws: relay.pseudo_labels("r1", 0, ws), "resume"),
    "input_shape": (lambda ws: relay.input_shape("r1", ws), "resume"),
    "model": (lambda ws: relay.model("r1", 0, ws), "resume"),
    "predict": (lambda ws: relay.predict("r1", 0, IMAGES, ws), "resume"),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_run_reader_refuses_a_workspace_that_does_not_exist(
    cwd: Path, no_store_settings, capsys, reader: str
) -> None:
    """The readers of one run say the run is not in the store, as `relay generations`/`relay resume` do."""
    call, command = READERS[reader]
    missing = cwd / "missing"
    message = refused_alike(lambda: call(missing), [command, "r1", "--workspace", str(missing)], cwd.parents[1], capsys)
    assert f"no run 'r1' in the artifact store {missing / 'artifacts'}" in message
