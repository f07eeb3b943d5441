"""`data.image_size` with a sharded dataset is refused with the way to unset it, wherever it was set.

Before the fix: crest_digits.yaml sets `image_size: 16`, and
`relay validate crest_digits.yaml data.name=parquet data.uri=DS` said only "leave data.image_size unset": the user
had set nothing, and was not told the override that unsets a file's key (`data.image_size=null`). A real dataset
from `relay data import digits`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from pipelines.datasets import imports
from tests.unit.orchestrator.cli.problems import problem_lines

CREST = str(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "crest_digits.yaml")
UNSET = "unset data.image_size: drop it where it is set, or override a file's with data.image_size=null"


@pytest.fixture(scope="module")
def digits_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    dest = str(tmp_path_factory.mktemp("shards") / "digits")
    imports.import_dataset("digits", dest, {})
    return dest


def test_a_files_image_size_names_the_override_that_unsets_it(
    digits_shards: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    shards = ["data.name=parquet", f"data.uri={digits_shards}", f"run.workspace={tmp_path / 'ws'}"]
    assert main(["validate", CREST, *shards]) == 2
    [problem] = problem_lines(capsys.readouterr().err)
    assert problem.startswith("data.image_size: 16 resizes an in-memory dataset, but a sharded dataset"), problem
    assert f"{UNSET} (set on the command line: data.name=parquet)" in problem
    assert not (tmp_path / "ws").exists()

    assert main(["validate", CREST, *shards, "data.image_size=null"]) == 0, "the override the message names works"
