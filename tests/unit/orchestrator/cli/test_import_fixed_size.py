"""`relay data import` of a source with a size of its own (digits, synthetic, CIFAR) given --image-size: one line naming
the flag, the source's size and the fix, exit 2, nothing written. It said `source 'digits' takes no image_size (only:
none)`, naming neither the flag nor what to do. The advice is the working one: a sharded dataset refuses
data.image_size, so another size means reading the source in place with data.image_size."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.unit.orchestrator.cli.problems import problem_lines

CONFIGS = Path(__file__).resolve().parents[4] / "pipelines" / "configs"


def fake_cifar10(tmp_path: Path) -> Path:
    """A folder `relay data import` takes for CIFAR-10 (its batches.meta), refused before any batch is read."""
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(b"")
    return folder


@pytest.mark.parametrize(("source", "shape"), [("digits", "1x16x16"), ("synthetic", "1x16x16"), ("cifar10", "3x32x32")])
def test_a_source_of_its_own_size_names_the_flag_its_size_and_the_fix(
    source: str, shape: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = fake_cifar10(tmp_path) if source == "cifar10" else None
    dest = tmp_path / "dest"
    assert main(["data", "import", str(folder.parent if folder else source), str(dest), "--image-size", "8"]) == 2
    assert not dest.exists()
    [problem] = problem_lines(capsys.readouterr().err)
    in_place = f"data.name={source}" + (f" data.root={shlex.quote(str(folder))}" if folder else "")
    assert problem == (
        f"--image-size: source {source!r} is imported at its own size ({shape}) and takes no --image-size, which "
        "resizes image folders only; drop --image-size. A sharded dataset keeps the size it was imported at, so to "
        f"train {source} at 8x8 read it in place instead: {in_place} data.image_size=8"
    )


def test_the_advice_for_digits_is_a_valid_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "import", "digits", str(tmp_path / "dest"), "--image-size", "8"]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    overrides = shlex.split(problem.rsplit("read it in place instead: ", 1)[1])
    config = str(CONFIGS / "crest_digits.yaml")
    assert main(["validate", config, f"run.workspace={tmp_path / 'ws'}", *overrides]) == 0


def test_the_sources_own_size_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--image-size 16 for digits restates the size they are imported at: an import like any other."""
    dest = tmp_path / "dest"
    assert main(["data", "import", "digits", str(dest), "--image-size", "16"]) == 0
    assert main(["data", "info", str(dest)]) == 0
    assert "1x16x16" in capsys.readouterr().out
