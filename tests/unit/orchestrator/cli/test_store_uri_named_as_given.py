"""A store URI pyarrow cannot open, given to a command that reads the store, is named by the flag or variable
that gave it, on one line headed by the command line, exit 2.

Before: `relay runs --artifact-uri nosuch://x` said `run.artifact_uri: ...`, a key the user never wrote, and
`--artifact-uri file://rel` came "in the configuration", which there was none of.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.orchestrator.cli.test_cli_writes_nothing import refused


@pytest.mark.parametrize("command", [["runs"], ["gc"], ["generations", "r1"], ["delete", "r1", "--yes"]])
@pytest.mark.parametrize(
    ("uri", "reason"),
    [("nosuch://x", "Unrecognized filesystem type in URI"), ("file://rel", "File URI cannot be relative")],
)
def test_a_store_uri_pyarrow_cannot_open_is_named_by_its_flag(
    cwd: Path, capsys, command: list[str], uri: str, reason: str
) -> None:
    err = refused([*command, "--artifact-uri", uri], cwd, capsys)
    assert err.startswith(f"relay: 1 problem(s) in the command line:\n  - --artifact-uri: pyarrow cannot open {uri!r}")
    assert reason in err, err


def test_a_store_uri_from_the_environment_is_named_by_its_variable(cwd: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RELAY_ARTIFACT_URI", "nosuch://x")
    err = refused(["runs"], cwd, capsys)
    assert "  - $RELAY_ARTIFACT_URI: pyarrow cannot open 'nosuch://x'" in err, err
