"""A FitNets file naming two layers its networks lack lists two problems, each under its own key and override.

One check of both layers gave one line, `fitnets.hint_layer: ...; fitnets.guided_layer: ...`, pinned on
one override (the hint layer's) only.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.orchestrator.cli.test_cli_writes_nothing import SMOKE, refused
from tests.unit.orchestrator.cli.test_problems_at_once import problems_in

FITNETS = str(SMOKE.parent / "fitnets_digits.yaml")


def test_a_hint_layer_and_a_guided_layer_the_networks_lack_are_two_problems(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELAY_WORKSPACE", raising=False)
    err = refused(["validate", FITNETS, "fitnets.guided_layer=zzz", "fitnets.hint_layer=foo"], tmp_path, capsys)
    problems = sorted(problems_in(err))
    assert len(problems) == 2, problems
    guided, hint = problems
    assert guided.startswith("  - fitnets.guided_layer: 'small_cnn' has no hint layer 'zzz'"), guided
    assert guided.endswith("(set on the command line: fitnets.guided_layer=zzz)"), guided
    assert hint.startswith("  - fitnets.hint_layer: 'resnet18' has no hint layer 'foo'"), hint
    assert hint.endswith("(set on the command line: fitnets.hint_layer=foo)"), hint
    assert "guided" not in hint and "hint_layer" not in guided, problems
