"""`relay data import --help` says what each --encoding stores and when to choose it (it said only
"auto: raw up to 64x64x3", leaving raw and png to be guessed)."""

from __future__ import annotations

import re

import pytest

from orchestrator.cli import main
from pipelines.datasets.codec import RAW_MAX_BYTES


def encoding_help(capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as done:
        main(["data", "import", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    return re.search(r"--encoding \{auto,raw,png\} (.*?) --image-size", text).group(1)


def test_every_encoding_is_described_with_when_to_choose_it(capsys: pytest.CaptureFixture) -> None:
    described = encoding_help(capsys)
    assert "auto (default): raw for images of up to 12 KB (64x64 RGB), png above" in described
    assert "raw: uncompressed pixels, the fastest to read; for small images" in described
    assert "png: lossless and 2-4x smaller" in described and "for large images" in described


def test_the_auto_threshold_said_is_the_codecs() -> None:
    assert RAW_MAX_BYTES == 64 * 64 * 3 == 12288
