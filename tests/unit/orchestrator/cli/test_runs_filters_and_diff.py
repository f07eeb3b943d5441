"""`relay runs --status/--pipeline/--last/--overrides` pick and tell runs apart; `relay diff A B` compares two runs'
records; a FAILED run's note under `relay generations` names the stage that failed and its error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.cli.records.run_notes import unfinished_note
from orchestrator.dag import Pipeline, Stage
from orchestrator.engine.artifacts import ArtifactStore
from orchestrator.engine.executors import LocalExecutor
from orchestrator.engine.ledger import COMMAND_FILE, CONFIG_FILE, record_path
from orchestrator.engine.runner import Runner
from orchestrator.errors import StageError
from orchestrator.registry import PipelineSpec
from tests.unit.orchestrator.engine.toy import RecordingTracker, bad_value, toy

TOY = PipelineSpec(name="toy", config_model=dict, build=lambda config: toy(), summary={"score": "evaluate/score"})
SPECS = {"toy": TOY}


def toy_run(workspace: Path, run_id: str, config: str, overrides: list[str], code: str = "v1", **kw) -> ArtifactStore:
    """A finished toy run with the record `relay run` leaves: config.yaml, command.json and the ledger."""
    store = ArtifactStore(str(workspace / "artifacts"))
    store.write_record(record_path(run_id, CONFIG_FILE), config.encode())
    command = {"config": "toy.yaml", "overrides": overrides, "rerun": []}
    store.write_record(record_path(run_id, COMMAND_FILE), json.dumps(command).encode())
    Runner(store, LocalExecutor(), RecordingTracker(), code, 0).run(toy(**kw), run_id)
    return store


def stopped_toy_run(workspace: Path, run_id: str) -> None:
    """A toy run stopped after g00/train, of a config named `other` (its ledger names the run by it, as `relay run`'s)."""
    store = ArtifactStore(str(workspace / "artifacts"))
    store.write_record(record_path(run_id, CONFIG_FILE), b"pipeline: toy\nname: other\n")
    named = Pipeline("other", toy().stages)
    Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0).run(named, run_id, stop_after="g00/train")


def listed(workspace: Path, capsys: pytest.CaptureFixture, *options: str) -> list[list[str]]:
    assert main(["runs", "--workspace", str(workspace), *options], pipelines=SPECS) == 0
    return [line.split() for line in capsys.readouterr().out.splitlines()]


# --- relay runs ----------------------------------------------------------------------------------


def test_runs_filters_by_status_and_pipeline_and_keeps_the_newest(tmp_path: Path, capsys) -> None:
    toy_run(tmp_path, "r1", "pipeline: toy\nname: toy\n", ["lr=0.25"], lr=0.25)
    toy_run(tmp_path, "r2", "pipeline: toy\nname: toy\n", ["lr=0.5"], lr=0.5)
    stopped_toy_run(tmp_path, "r3")

    assert [row[0] for row in listed(tmp_path, capsys)[2:]] == ["r3", "r2", "r1"]  # the default, as before
    assert [row[0] for row in listed(tmp_path, capsys, "--status", "finished")[2:]] == ["r2", "r1"]
    assert [row[0] for row in listed(tmp_path, capsys, "--status", "stopped,FAILED")[2:]] == ["r3"]
    assert [row[0] for row in listed(tmp_path, capsys, "--pipeline", "other")[2:]] == ["r3"]  # the config's name
    assert [row[0] for row in listed(tmp_path, capsys, "--pipeline", "toy", "--last", "2")[2:]] == ["r3", "r2"]
    assert [row[0] for row in listed(tmp_path, capsys, "--status", "FINISHED", "--last", "1")[2:]] == ["r2"]
    nothing = listed(tmp_path, capsys, "--status", "RUNNING", "--pipeline", "toy")
    assert " ".join(nothing[0]).startswith("none of the 3 runs in") and "`relay runs`" in " ".join(nothing[0])


def test_runs_shows_each_runs_overrides_as_a_column_cut_when_long(tmp_path: Path, capsys) -> None:
    many = [f"augment.strong.magnitude={i}" for i in range(5)]
    toy_run(tmp_path, "r1", "pipeline: toy\nname: toy\n", many)
    toy_run(tmp_path, "r2", "pipeline: toy\nname: toy\n", ["lr=0.5"], lr=0.5)
    stopped_toy_run(tmp_path, "r3")  # no command.json, as a Tune trial

    assert main(["runs", "--workspace", str(tmp_path), "--overrides"], pipelines=SPECS) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "overrides"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["r2"].endswith("lr=0.5")
    assert rows["r1"].endswith("...") and "augment.strong.magnitude=0 augment" in rows["r1"]
    assert len(rows["r1"].split("  ")[-1].strip()) <= 60
    assert rows["r3"].endswith("?")


@pytest.mark.parametrize(
    ("options", "said"),
    [(["--status", "DONE"], "unknown status DONE; pick from"), (["--last", "0"], "1 or more, got '0'")],
)
def test_runs_bad_filter_is_exit_2_naming_the_choices(tmp_path: Path, capsys, options: list[str], said: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["runs", "--workspace", str(tmp_path), *options])
    assert exit_info.value.code == 2
    assert said in capsys.readouterr().err
    assert not tmp_path.joinpath("artifacts").exists()


# --- relay diff ----------------------------------------------------------------------------------


def diff_out(workspace: Path, capsys: pytest.CaptureFixture, *args: str) -> str:
    assert main(["diff", *args, "--workspace", str(workspace)], pipelines=SPECS) == 0
    return capsys.readouterr().out


def test_diff_shows_differing_keys_overrides_code_and_scores_and_leaves_locations_out(tmp_path: Path, capsys) -> None:
    first = (
        "pipeline: toy\nname: toy\nseed: 0\ntrain: {lr: 0.25, steps: 10}\nrun: {workspace: /a}\ntracking: {uri: x}\n"
    )
    second = (
        "pipeline: toy\nname: toy\nseed: 0\ntrain: {lr: 0.5, steps: 10}\nrun: {workspace: /b}\ntracking: {uri: y}\n"
    )
    toy_run(tmp_path, "ra", first, ["train.lr=0.25"], lr=0.25)
    toy_run(tmp_path, "rb", second, ["train.lr=0.5", "seed=0"], lr=0.5)

    out = diff_out(tmp_path, capsys, "ra", "rb")
    config = out.split("\n\n")[0].splitlines()
    assert config[0] == "config: 1 key(s) differ"
    assert config[3].split() == ["train.lr", "0.25", "0.5"]
    assert "left out, where each run lived: run.workspace, tracking.uri; --locations shows them" in config[4]
    assert "  ra: train.lr=0.25\n  rb: train.lr=0.5 seed=0" in out
    assert "code versions: the same" in out
    scores = out.split("evaluate/score per generation")[1].splitlines()
    assert scores[3].split() == ["0", "3.0000", "6.0000"]

    shown = diff_out(tmp_path, capsys, "ra", "rb", "--locations")
    assert shown.splitlines()[0] == "config: 3 key(s) differ"
    assert ["run.workspace", "/a", "/b"] in [line.split() for line in shown.splitlines()]


def test_diff_names_the_modules_and_stages_whose_code_differs(tmp_path: Path, capsys) -> None:
    toy_run(tmp_path, "ra", "pipeline: toy\nname: toy\n", [], code={"m.train": "aaaa", "m.evaluate": "cccc"})
    toy_run(tmp_path, "rb", "pipeline: toy\nname: toy\n", [], code={"m.train": "bbbb", "m.evaluate": "cccc"})

    out = diff_out(tmp_path, capsys, "ra", "rb")
    assert "config: the same" in out and "  ra: none" in out
    code = out.split("code versions: ")[1].splitlines()
    assert code[0] == "1 of 2 module(s) differ"
    assert code[3].split() == ["m.train", "g00/train", "aaaa", "bbbb"]


def test_diff_of_an_unknown_run_is_exit_2_naming_relay_runs(tmp_path: Path, capsys) -> None:
    toy_run(tmp_path, "ra", "pipeline: toy\nname: toy\n", [])
    assert main(["diff", "ra", "nope", "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no run 'nope' in the artifact store" in captured.err and "`relay runs --artifact-uri " in captured.err
    assert main(["diff", "../up", "ra", "--workspace", str(tmp_path)], pipelines=SPECS) == 2
    assert "is not a safe name" in capsys.readouterr().err


# --- a FAILED run's note -------------------------------------------------------------------------


def note_of_a_run_failed_by(body: Any, tmp_path: Path, run_id: str) -> str | None:
    """`relay generations`' note on a real run whose stage ``g00/check`` ran ``body`` and failed."""
    store = ArtifactStore(str(tmp_path / "artifacts"))
    store.write_record(record_path(run_id, CONFIG_FILE), b"pipeline: toy\nname: toy\n")
    failing = toy(extra=(Stage("g00/check", body, ("report",), ("checked",), generation=0),))
    with pytest.raises(StageError):
        Runner(store, LocalExecutor(), RecordingTracker(), "v1", 0).run(failing, run_id)
    return unfinished_note(store, run_id)


def test_a_failed_runs_note_names_the_failed_stage_and_its_error(tmp_path: Path) -> None:
    """The note said "finish it with `relay resume`" whatever the stage's error said to do (start the run again)."""
    note = note_of_a_run_failed_by(bad_value, tmp_path, "rf")
    assert note is not None and note.startswith("Run rf is FAILED, not finished")
    assert "stage g00/check failed: ValueError: threshold must be in (0, 1); got 2. Once that cause is fixed" in note
    assert "`relay resume rf --artifact-uri" in note


def test_a_failed_runs_note_says_where_its_traceback_is_kept(tmp_path: Path) -> None:
    """The note showed the error's first line; where the stage's body raised was only on the console that ran it."""
    note = note_of_a_run_failed_by(bad_value, tmp_path, "rt")
    kept = tmp_path / "artifacts" / "runs" / "rt" / "errors" / "g00_check.txt"
    assert note is not None and note.endswith(f"(its traceback: {kept})")
    assert "ValueError: threshold must be in (0, 1); got 2" in kept.read_text()


def test_diff_says_whether_the_runs_read_the_same_data(tmp_path: Path, capsys) -> None:
    toy_run(tmp_path, "ra", "pipeline: toy\nname: toy\ndata: {root: /d, root_digest: 0123456789abcdef0123}\n", [])
    toy_run(tmp_path, "rb", "pipeline: toy\nname: toy\ndata: {root: /d, root_digest: fedcba9876543210fedc}\n", [])
    toy_run(tmp_path, "rc", "pipeline: toy\nname: toy\ndata: {root: /d, root_digest: fedcba9876543210fedc}\n", [])

    assert "data digests: differ (data.root_digest 0123456789ab vs fedcba987654)" in diff_out(
        tmp_path, capsys, "ra", "rb"
    )
    assert "data digests: the same (data.root_digest fedcba987654)" in diff_out(tmp_path, capsys, "rb", "rc")


def unreadable_image(ctx, inputs, params):
    from pipelines.image_folder import UnreadableImageError

    raise UnreadableImageError("/data/cat/1.png: cannot identify image file")


def test_a_run_failed_on_unreadable_data_is_told_to_start_again_as_the_runner_says(tmp_path: Path) -> None:
    note = note_of_a_run_failed_by(unreadable_image, tmp_path, "ru")
    assert "stage g00/check failed: UnreadableImageError: /data/cat/1.png: cannot identify image file" in note
    assert "start a new run (`relay run`)" in note and "relay resume" not in note
