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


# --- what a config file can get wrong -------------------------------------------------------------------------


def problem_line(err: str, key: str) -> str:
    return next(line for line in err.splitlines() if line.strip().startswith(f"- {key}"))


def test_a_binary_file_is_not_a_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    binary = tmp_path / "model.pt"
    binary.write_bytes(bytes(range(256)) * 4)
    assert run_cli(tmp_path, binary) == 2
    err = capsys.readouterr().err
    assert "model.pt is not a text file (byte 128 is not UTF-8); pass a YAML config file" in err
    assert "Traceback" not in err and not (tmp_path / "ws").exists()


def test_a_folder_is_not_a_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(tmp_path, tmp_path, command="validate") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is a folder, not a config file; pass a YAML file" in err and "permission" not in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "pipeline: crest\nname: x\nseed: 1\nseed: 2\n",
            "line 4, column 1: duplicate key 'seed' (first given on line 3)",
        ),
        (
            "pipeline: crest\nname: x\ntrain:\n  steps: 5\ntrain:\n  lr: 0.1\n",
            "duplicate key 'train' (first given on line 3)",
        ),
        ("pipeline: crest\nname: x\ntrain: {steps: 5, steps: 6}\n", "duplicate key 'steps' (first given on line 3)"),
        # YAML 1.1 reads `steps: 1:20` in base 60, as 80: a run would train for a number nobody wrote
        (
            "pipeline: crest\nname: x\ntrain:\n  steps: 1:20\n",
            "line 4, column 10: '1:20' is a base-60 number in YAML 1.1 (read as 80); write the number itself, or quote it",
        ),
        ("pipeline: crest\ntrain: {lr: 0:0.5}\n", "'0:0.5' is a base-60 number in YAML 1.1 (read as 0.5)"),
    ],
)
def test_yaml_a_reader_would_misread_is_refused_saying_where_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture, text: str, expected: str
) -> None:
    config = tmp_path / "dup.yaml"
    config.write_text(text)
    assert run_cli(tmp_path, config, command="validate") == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    "override", ["train.steps=yes", "crest.generations=yes", "train.lr=on", "data.class_order=[true]"]
)
def test_a_boolean_is_not_a_number(tmp_path: Path, capsys: pytest.CaptureFixture, override: str) -> None:
    assert run_cli(tmp_path, SMOKE, override) == 2
    line = problem_line(capsys.readouterr().err, override.split("=")[0])
    assert "expected a number, got" in line and "YAML reads yes/no/on/off/true/false as booleans" in line


@pytest.mark.parametrize(
    "override",
    ["train.lr=.inf", "train.lr=1e400", "train.weight_decay=.inf", "train.lambda_u=-.inf", "crest.alpha=.nan"],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture, override: str) -> None:
    assert run_cli(tmp_path, SMOKE, override) == 2
    assert "must be a finite number" in problem_line(capsys.readouterr().err, override.split("=")[0])


def test_cifar10_without_a_root_names_the_key_not_the_section(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(tmp_path, SMOKE, "data.name=cifar10", command="validate") == 2
    line = problem_line(capsys.readouterr().err, "data")
    assert "set data.root to the folder that holds it" in line
    assert "{" not in line and "got" not in line, "the data section itself is not echoed"


def test_an_empty_tune_space_is_explained_in_our_words(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(tmp_path, SMOKE, "tune.space={}", command="validate") == 2
    line = problem_line(capsys.readouterr().err, "tune.space")
    assert "the search space is empty, so there is nothing to tune" in line and "Dictionary" not in line


def test_ke_split_rate_says_got_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ke = SMOKE.parent / "ke_digits.yaml"
    assert run_cli(tmp_path, ke, "ke.split_rate=2", command="validate") == 2
    line = problem_line(capsys.readouterr().err, "ke.split_rate")
    assert line.count("got") == 1 and "got 2.0" in line


def test_a_huge_head_count_is_one_exact_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    huge = 10**23
    assert run_cli(tmp_path, SMOKE, f"data.head_count={huge}", command="validate") == 2
    line = problem_line(capsys.readouterr().err, "data")
    assert f"head_count {huge} does not fit: the largest class has 183 samples, 163 after the 20 held out" in line
    assert "Set head_count to at most 158" in line and "99999999999999991611392" not in line


def test_a_problem_an_override_set_names_that_override(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The message is headed by the file, where `train=5` is nowhere to be found; the line says where it came from."""
    assert run_cli(tmp_path, SMOKE, "train=5", "seed=3") == 2
    line = problem_line(capsys.readouterr().err, "train")
    assert line.endswith("(set on the command line: train=5)"), line
    assert run_cli(tmp_path, SMOKE, "seed=-1") == 2
    assert problem_line(capsys.readouterr().err, "seed").endswith("(set on the command line: seed=-1)")


def test_a_preflight_or_location_problem_an_override_set_names_that_override(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Found after validation (where a run would write, the data), such problems lacked the suffix the others have."""
    assert run_cli(tmp_path, SMOKE, "tracking.uri=nosuch://x", command="validate") == 2
    line = problem_line(capsys.readouterr().err, "tracking.uri")
    assert line.endswith("(set on the command line: tracking.uri=nosuch://x)"), line
    missing = tmp_path / "no-such-folder"
    assert run_cli(tmp_path, SMOKE, "data.name=imagefolder", f"data.root={missing}", command="validate") == 2
    line = problem_line(capsys.readouterr().err, "data.root")
    assert line.endswith(f"(set on the command line: data.root={missing})"), line


def test_a_problem_found_building_the_pipeline_is_headed_by_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A probe of a stage with no model was "in the configuration", without the file or the override."""
    noisy = str(Path(SMOKE).parent / "noisy_student_digits.yaml")
    assert run_cli(tmp_path, noisy, "probe=[g00/filter]", command="validate") == 2
    err = capsys.readouterr().err
    assert f"1 problem(s) in {noisy}:" in err
    assert problem_line(err, "probe[0]").endswith("(set on the command line: probe=[g00/filter])")
