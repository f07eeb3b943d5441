"""A sharded dataset's local `data.uri` is saved absolute, as `data.root` is: a resume from another folder reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.pipeline_files import load_pipeline_file

SMOKE = Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml"


def test_a_relative_data_uri_is_saved_absolute_and_a_uri_with_a_scheme_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`data.uri=data/digits` was saved as typed: `relay resume` from elsewhere said there were no shards."""
    assert main(["data", "import", "digits", str(tmp_path / "data" / "digits")]) == 0
    monkeypatch.chdir(tmp_path)
    _, config, pinned = load_pipeline_file(str(SMOKE), ["data.name=parquet", "data.uri=data/digits"], local=False)
    assert config.data.uri == pinned["data"]["uri"] == str(tmp_path / "data" / "digits")

    from pipelines.schema import absolute_local_uri

    assert absolute_local_uri("s3://bucket/digits") == "s3://bucket/digits"
    assert absolute_local_uri(None) is None
