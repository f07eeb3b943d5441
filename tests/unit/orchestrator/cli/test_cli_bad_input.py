"""Bad input gets one clear message naming the key, exit code 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


def run_cli(tmp_path: Path, config: Path, *overrides: str, command: str = "run") -> int:
    return main([command, str(config), f"run.workspace={tmp_path / 'ws'}", *overrides])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["train.stepz=5"], "train.stepz"),
        (["train.steps=many"], "train.steps"),
        (["data.imbalance_ratio=0.5"], "data.imbalance_ratio"),
        (["data.labeled_fraction=0"], "data.labeled_fraction"),
        (["data.labeled_fraction=1.5"], "data.labeled_fraction"),
        (["crest.alpha=0"], "crest.alpha"),
        (["crest.generations=0"], "crest.generations"),
        (["data.name=cifar10", "data.root=/nonexistent/cifar"], "data.root"),
        (["data.name=cifar10"], "data"),
        (["data.labeled_fraction=1"], "data.labeled_fraction"),
        (["model.name=resnet9000"], "model.name"),
    ],
)
def test_bad_values_exit_2_name_the_key_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, overrides: list[str], key: str
) -> None:
    assert run_cli(tmp_path, SMOKE, *overrides) == 2
    message = capsys.readouterr().err
    assert key in message
    assert not (tmp_path / "ws").exists(), "bad input must not create the workspace"


def test_every_problem_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(tmp_path, SMOKE, "crest.alpha=-1", "crest.generations=0", "train.lr=-3") == 2
    message = capsys.readouterr().err
    assert all(key in message for key in ("crest.alpha", "crest.generations", "train.lr"))


def test_malformed_yaml(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipeline: crest\ndata: {name: digits\n")
    assert run_cli(tmp_path, broken) == 2
    assert "broken.yaml" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(tmp_path, tmp_path / "nope.yaml") == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_unknown_pipeline_lists_valid_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("pipeline: alchemy\n")
    assert run_cli(tmp_path, other) == 2
    assert "crest" in capsys.readouterr().err


def test_validate_accepts_every_bundled_config(capsys: pytest.CaptureFixture) -> None:
    for config in sorted(SMOKE.parent.glob("*.yaml")):
        if "cifar" in config.name or "flower" in config.name:
            continue  # these read a local dataset copy that CI does not have
        assert main(["validate", str(config)]) == 0, config.name
    assert "valid" in capsys.readouterr().out


def test_bundled_configs_start_with_the_command_that_runs_them() -> None:
    for config in sorted(SMOKE.parent.glob("*.yaml")):
        first = config.read_text().splitlines()[0]
        assert first.startswith(f"# relay run pipelines/configs/{config.name}"), config.name
