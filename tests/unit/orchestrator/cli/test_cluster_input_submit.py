"""`relay submit` refuses impossible flags and flag mixes with exit 2, before it reads or sends anything."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.cli import main

SMOKE = Path(__file__).resolve().parents[4] / "pipelines" / "configs" / "smoke.yaml"


def dead_address() -> str:
    """A well-formed dashboard address where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder with a durable workspace, so only the flag under test is wrong."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("RELAY_WORKSPACE", str(tmp_path / "ws"))
    for name in ("RELAY_ARTIFACT_URI", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return folder


def refused(argv: list[str], cwd: Path, capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert list(cwd.iterdir()) == [] and not (cwd.parent / "ws").exists(), "bad input wrote something"
    return err


def test_a_config_with_resume_is_refused_naming_what_to_drop(cwd: Path, capsys) -> None:
    err = refused(["submit", str(SMOKE), "train.steps=3", "--resume", "r1", "--address", dead_address()], cwd, capsys)
    assert "smoke.yaml train.steps=3" in err and "--resume" in err and "drop" in err
    assert "no Ray Jobs server" not in err, "refused before the cluster is asked"


@pytest.mark.parametrize(
    "flags", [["--run-id", "r2"], ["--rerun-from", "g00/train"], ["--no-cache"], ["--num-gpus", "1"]]
)
def test_flags_that_resume_would_ignore_are_refused(cwd: Path, capsys, flags: list[str]) -> None:
    err = refused(["submit", "--resume", "r1", *flags, "--address", dead_address()], cwd, capsys)
    assert f"{flags[0]}: has no effect with --resume" in err


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf"])
def test_an_impossible_gpu_count_is_refused_first(cwd: Path, capsys, value: str) -> None:
    err = refused(["submit", str(SMOKE), f"--num-gpus={value}", "--address", dead_address()], cwd, capsys)
    assert "--num-gpus: expected a finite number >= 0" in err
    assert "no Ray Jobs server" not in err


@pytest.mark.parametrize(
    ("address", "text"),
    [
        ("http://127.0.0.1:99999", "port must be a number from 1 to 65535"),
        ("ftp://127.0.0.1:21", "http:// or https://"),
        ("127.0.0.1", "no port"),
    ],
)
def test_a_malformed_address_is_refused_before_the_config_is_read(cwd: Path, capsys, address: str, text: str) -> None:
    err = refused(["submit", str(SMOKE), "--address", address], cwd, capsys)
    assert text in err and "--address http://HOST:8265" in err


def test_a_malformed_ray_address_variable_is_named(cwd: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    err = refused(["submit", "--resume", "r1"], cwd, capsys)
    assert "RAY_ADDRESS 'garbage'" in err and "RAY_ADDRESS=http://HOST:8265" in err


@pytest.mark.parametrize("command", [["jobs"], ["status", "job-1"], ["logs", "job-1"], ["stop", "job-1"]])
def test_an_address_where_nothing_answers_is_bad_input(cwd: Path, capsys, command: list[str]) -> None:
    address = dead_address()
    err = refused([*command, "--address", address], cwd, capsys)
    assert f"no Ray Jobs server at {address}" in err and "--address" in err
