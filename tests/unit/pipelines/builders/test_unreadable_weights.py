"""`init.source` pointing at a file that is no checkpoint Relay can read: one line saying why and what init.source
takes, exit 2, nothing written. torch's own text (7 lines advising `weights_only=False`, which runs the file's code,
and filing an issue with PyTorch; "negative seek value" for a file cut short) is no advice for a Relay user."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from orchestrator.cli import main
from pipelines.models import create_model
from tests.unit.orchestrator.cli.problems import problem_lines

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"
ACCEPTED = "point init.source at a torch state dict or a Relay checkpoint saved with torch.save (a .pt file)"


def saved(value: object, **options: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer, **options)
    return buffer.getvalue()


def first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def real_weights(**options: object) -> bytes:
    return saved(create_model("small_cnn", 10, 1).state_dict(), **options)


FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "text": (lambda: b"garbage\n", "not a file torch.save wrote"),
    "empty": (lambda: b"", "the file is empty"),
    "truncated": (lambda: first_half(real_weights()), "a torch file cut short or damaged; save or copy it again"),
    "truncated_legacy": (
        lambda: first_half(real_weights(_use_new_zipfile_serialization=False)),
        "a torch file cut short or damaged; save or copy it again",
    ),
    "object": (
        lambda: saved({"args": argparse.Namespace(lr=0.1)}),
        "it stores an object of class argparse.Namespace; Relay loads only tensors and plain values, never code",
    ),
    "list": (lambda: saved([torch.zeros(2)]), "it holds a list, not a state dict"),
}


@pytest.mark.parametrize("kind", FILES)
def test_a_file_that_is_no_checkpoint_gets_one_line_naming_why_and_what_is_accepted(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    make, reason = FILES[kind]
    weights = tmp_path / f"{kind}.pt"
    weights.write_bytes(make())
    workspace = tmp_path / "ws"
    assert main(["run", str(SMOKE), f"run.workspace={workspace}", f"init.source={weights}"]) == 2
    assert not workspace.exists(), "bad input must not create the workspace"
    err = capsys.readouterr().err
    [problem] = problem_lines(err)
    assert problem.startswith(f"init.source: {weights} is not a checkpoint Relay can read ({reason}); {ACCEPTED}")
    assert len(err.strip().splitlines()) == 2, err  # the `relay: 1 problem(s)` header and the problem itself
    for torch_advice in ("weights_only", "file an issue", "seek", "PytorchStreamReader"):
        assert torch_advice not in err
