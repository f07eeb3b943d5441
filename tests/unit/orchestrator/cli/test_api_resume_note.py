"""The note on a RelayError names the ``relay.resume`` call that finds the run: its workspace or its artifact store.

QA's run used ``workspace='/work/qa7/ws_term'``; its failure's note said "finish it with relay.resume('ID')", and that
call, pasted, failed: "no run ... in the artifact store .../relay-workspace/artifacts". The CLI's hint adds
--artifact-uri for the same reason. Here a real run fails where Ray starts (a RelayError, as a refused local Ray
instance gives), and the note's call is run as a user pastes it, from another folder, once the cause is gone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.cli import api
from orchestrator.engine.executors import LocalExecutor
from orchestrator.errors import RelayError

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"
LOCAL = ["run.executor=local", "train.steps=3", "crest.generations=1", "tracking.system_metrics=false"]


def ray_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def warm_up(self: LocalExecutor, pipeline: object) -> None:
        raise RelayError("could not start a local Ray instance: out of memory")

    monkeypatch.setattr(LocalExecutor, "warm_up", warm_up)


def resume_call(error: pytest.ExceptionInfo[RelayError]) -> str:
    """The call the error's note says to run."""
    (note,) = [note for note in error.value.__notes__ if "finish it with" in note]
    return re.search(r"finish it with (relay\.resume\(.*\))$", note).group(1)


def pasted(call: str) -> api.RunResult:
    """``call`` run as a user pastes it into a notebook where ``import relay`` was done."""
    return eval(call, {"relay": api})  # the note's own text: what is tested is that it runs as pasted


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_store_settings: None) -> Path:
    """A working folder with no workspace of its own: where the note's call is pasted."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_a_run_in_a_workspace_given_is_resumed_by_the_call_its_note_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, elsewhere: Path
) -> None:
    workspace = str(tmp_path / "ws")
    with monkeypatch.context() as patched, pytest.raises(RelayError) as failed:
        ray_refused(patched)
        api.run(SMOKE, LOCAL, workspace=workspace, run_id="cut")
    assert resume_call(failed) == f"relay.resume('cut', workspace={workspace!r})"
    assert pasted(resume_call(failed)).status == "FINISHED"


def test_a_run_whose_store_is_not_its_workspaces_is_resumed_by_the_call_its_note_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, elsewhere: Path
) -> None:
    """The store set by an override (as by the config), and a resume that fails again: both notes name the store."""
    store = str(tmp_path / "store")
    given = [*LOCAL, f"run.artifact_uri={store}"]
    with monkeypatch.context() as patched:
        ray_refused(patched)
        with pytest.raises(RelayError) as failed:
            api.run(SMOKE, given, workspace=tmp_path / "ws", run_id="cut")
        assert resume_call(failed) == f"relay.resume('cut', artifact_uri={store!r})"
        with pytest.raises(RelayError) as failed_again:
            pasted(resume_call(failed))
    assert resume_call(failed_again) == resume_call(failed)
    assert pasted(resume_call(failed_again)).status == "FINISHED"


def test_a_run_in_the_default_workspace_is_named_by_its_id_alone(
    monkeypatch: pytest.MonkeyPatch, elsewhere: Path
) -> None:
    with monkeypatch.context() as patched, pytest.raises(RelayError) as failed:
        ray_refused(patched)
        api.run(SMOKE, LOCAL, run_id="cut")
    assert resume_call(failed) == "relay.resume('cut')"
    assert pasted(resume_call(failed)).status == "FINISHED"
