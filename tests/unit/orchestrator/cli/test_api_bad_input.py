"""The Python API refuses bad input as `relay` does: one InputError with the CLI's message, nothing written.

Each case calls the API, then the CLI with the same input, from an empty working folder: the
messages must be the same (the CLI prints it after `relay: ` and exits 2) and the folder stays empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.cli import api, main
from orchestrator.cli.api import calls as api_calls
from orchestrator.cli.api import models as api_models
from orchestrator.cli.pipeline_files import BY_OVERRIDES, ON_THE_COMMAND_LINE
from orchestrator.errors import InputError

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"
LOCAL = "run.executor=local"


def files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def cli_message(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """What `relay ARGV` prints for bad input (it must exit 2), without its `relay: ` prefix."""
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err.strip().removeprefix("relay: ")


def refused_alike(call, argv: list[str], root: Path, capsys: pytest.CaptureFixture) -> str:
    """``call`` raises InputError with the message `relay ARGV` prints, and neither writes under ``root``."""
    before = files(root)
    with pytest.raises(InputError) as refused:
        call()
    # the one difference: where an override came from (`relay`'s command line, the API's `overrides`)
    assert str(refused.value) == cli_message(argv, capsys).replace(ON_THE_COMMAND_LINE, BY_OVERRIDES)
    assert files(root) == before, f"bad input wrote {files(root) - before}"
    return str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "flags", "expected"),
    [
        (["train.stepz=5"], {}, "train.stepz"),
        (["train.steps=0"], {}, "train.steps"),
        ([], {"stop_after": "g09/train"}, "no stage named 'g09/train'"),
        ([], {"run_id": "../escaped"}, "is not a safe name"),
        ([], {"rerun_from": "nosuch"}, "no stage named 'nosuch'"),
    ],
)
def test_run_refuses_what_relay_run_refuses(cwd: Path, capsys, overrides, flags, expected) -> None:
    argv = ["run", str(SMOKE), LOCAL, *overrides]
    argv += [arg for key, value in flags.items() for arg in (f"--{key.replace('_', '-')}", value)]
    message = refused_alike(lambda: api.run(SMOKE, [LOCAL, *overrides], **flags), argv, cwd.parents[1], capsys)
    assert expected in message


def test_a_workspace_given_is_refused_as_the_override_run_workspace_naming_the_argument(cwd: Path, capsys) -> None:
    """The message is `relay run ... run.workspace=afile`'s, but says what set it: the call's argument `workspace=`
    (QA read "(set by overrides: run.workspace=...)" though it had passed no such override), and an override's
    own problem beside it still names the override."""
    (cwd / "afile").write_text("x")
    argv = ["run", str(SMOKE), LOCAL, "train.steps=0", 'run.workspace="afile"']
    expected = cli_message(argv, capsys).replace(ON_THE_COMMAND_LINE, BY_OVERRIDES)
    expected = expected.replace(f'({BY_OVERRIDES}: run.workspace="afile")', "(set by the argument workspace='afile')")
    with pytest.raises(InputError) as refused:
        api.run(SMOKE, [LOCAL, "train.steps=0"], workspace="afile")
    assert str(refused.value) == expected
    assert "run.workspace: " in expected and f"({BY_OVERRIDES}: train.steps=0)" in expected
    assert files(cwd) == {"afile"}


def test_a_missing_config_file_is_refused_with_the_clis_message(cwd: Path, capsys) -> None:
    message = refused_alike(lambda: api.run("nosuch.yaml"), ["run", "nosuch.yaml"], cwd.parents[1], capsys)
    assert "file not found: nosuch.yaml" in message


def test_a_config_mapping_is_checked_like_a_file(cwd: Path) -> None:
    data = yaml.safe_load(SMOKE.read_text()) | {"seed": -1}
    with pytest.raises(InputError, match=r"problem\(s\) in (\S+/smoke\.yaml):\n  - seed: must be >= 0") as refused:
        api.run(data, [LOCAL])
    written_for_the_run = Path(str(refused.value).split(" in ", 1)[1].split(":", 1)[0])
    assert written_for_the_run.name == "smoke.yaml" and not written_for_the_run.parent.exists()
    assert files(cwd) == set()


@pytest.mark.usefixtures("no_store_settings")
@pytest.mark.parametrize("reader", ["generations", "resume"])
def test_a_run_the_workspace_lacks_is_refused_as_the_cli_refuses_it(cwd: Path, capsys, reader: str) -> None:
    (cwd / "ws" / "artifacts").mkdir(parents=True)
    call = getattr(api, reader)
    refused_alike(
        lambda: call("nosuch-run", cwd / "ws"), [reader, "nosuch-run", "--workspace", str(cwd / "ws")], cwd, capsys
    )


@pytest.mark.usefixtures("no_store_settings")
def test_the_artifact_readers_refuse_a_run_the_store_lacks_as_relay_resume_does(cwd: Path, capsys) -> None:
    (cwd / "ws" / "artifacts").mkdir(parents=True)
    expected = cli_message(["resume", "nosuch-run", "--workspace", str(cwd / "ws")], capsys)
    for call in (
        lambda: api.pseudo_labels("nosuch-run", 0, cwd / "ws"),
        lambda: api.model("nosuch-run", 0, cwd / "ws"),
        lambda: api.artifact("nosuch-run", "data/split", cwd / "ws"),
    ):
        with pytest.raises(InputError) as refused:
            call()
        assert str(refused.value) == expected and "no run 'nosuch-run'" in expected
    assert files(cwd) == {"ws", "ws/artifacts"}


def test_an_option_the_command_lacks_is_a_programming_error_not_bad_input() -> None:
    with pytest.raises(TypeError, match="`relay run` has no option nosuch"):
        api_calls.command_args("run", nosuch=1)


# --- argument types: refused at the API's edge, naming the argument and the fix ---------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda: api.pseudo_labels("some-run", "0"),
            "generation: expected an int >= 0 (0 is the first generation), got str '0'",
        ),
        (lambda: api.model("some-run", -1), "generation: expected an int >= 0"),
        (lambda: api.model("some-run", 1.0), "generation: expected an int >= 0"),
        (lambda: api.predict("some-run", 1.0, []), "generation: expected an int >= 0"),
        (lambda: api.pseudo_labels("some-run", True), "generation: expected an int >= 0"),
        (
            lambda: api.run(SMOKE, "data.buffer_mb=1"),
            "overrides: expected a list of 'key=value' strings, got the string 'data.buffer_mb=1'; pass ['data.buffer_mb=1']",
        ),
        (lambda: api.run(SMOKE, [LOCAL, 5]), "overrides: expected a list of 'key=value' strings"),
        (lambda: api.run(SMOKE, [LOCAL], workspace=3), "workspace: expected a path (a str or pathlib.Path), got int 3"),
        (lambda: api.run(42), "config: expected a pipeline file's path"),
        (lambda: api.runs(workspace=["ws"]), "workspace: expected a path"),
        (lambda: api.generations(7), "run_id: expected a Relay run id"),
        (lambda: api.resume("some-run", stop_after=3), "stop_after: expected a str, got int 3"),
        (
            lambda: api.run(SMOKE, [LOCAL], no_cache="false"),
            "no_cache: expected a bool (True or False), got str 'false'",
        ),
        (lambda: api.run(SMOKE, [LOCAL], no_cache=None), "no_cache: expected a bool"),
    ],
)
def test_arguments_of_the_wrong_type_are_one_input_error_naming_the_argument(cwd: Path, call, expected) -> None:
    with pytest.raises(InputError) as refused:
        call()
    assert str(refused.value).startswith(expected)
    assert "\n" not in str(refused.value), "one problem, not one per character"
    assert files(cwd.parents[1]) == {"a", "a/b"}


def test_a_numpy_integer_is_a_generation() -> None:
    import numpy as np

    assert api_calls.checked_generation(np.int64(2)) == 2


def test_an_empty_batch_of_images_is_bad_input_not_a_bare_value_error() -> None:
    """The shape is right but there is nothing to predict: predict's check says so before the model is loaded."""
    with pytest.raises(
        InputError, match=r"images: no images \(got an empty batch \[0, 1, 16, 16\]\); pass at least one"
    ):
        api_models.checked_images(np.zeros((0, 1, 16, 16), np.uint8), (1, 16, 16), "smoke-1")
    with pytest.raises(InputError, match=r"images: no images"):
        api_models.checked_images(np.zeros((0, 16, 16), np.uint8), (1, 16, 16), "smoke-1")


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (None, "expected a numpy array or torch tensor of uint8 pixels [N, C, H, W], got NoneType None"),
        ("pixels", "expected a numpy array or torch tensor of uint8 pixels [N, C, H, W], got str 'pixels'"),
        ([[0, 1]], "expected a numpy array or torch tensor"),
        (np.zeros((2, 1, 16, 16), np.int64), "got dtype int64; convert pixels 0..255 with .astype(np.uint8)"),
        (np.zeros((2, 1, 16, 16), np.float32), "got dtype float32; pass the pixels as read, not scaled"),
        (np.zeros((2, 16, 16, 1), np.uint8), "got [2, 16, 16, 1]; move the channels first"),
        (np.zeros((2, 3, 16, 16), np.uint8), "got [2, 3, 16, 16]; give each image 1 channel(s)"),
        (np.zeros((2, 256), np.uint8), "got [2, 256]; reshape the rows to images (batch.reshape(-1, 1, 16, 16))"),
        (np.zeros((2, 1, 32, 32), np.uint8), "got [2, 1, 32, 32]; resize them to 16x16"),
        (np.zeros((16, 16), np.uint8), "got [16, 16]; one image needs a batch axis: pass images[None]"),
    ],
)
def test_images_predict_cannot_take_get_the_fix_for_what_is_wrong_with_them(images, expected) -> None:
    """A list, None, other integers, channels last, other channels, flat rows: each its own fix, not 'resize'."""
    with pytest.raises(InputError) as refused:
        api_models.checked_images(images, (1, 16, 16), "some-run")
    assert expected in str(refused.value), str(refused.value)


def test_images_of_the_trained_shape_pass_as_uint8_nchw() -> None:
    batch = api_models.checked_images(np.zeros((3, 16, 16), np.uint8)[:, ::-1], (1, 16, 16), "some-run")
    assert batch.shape == (3, 1, 16, 16) and batch.dtype == np.uint8
