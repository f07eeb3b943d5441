"""A FIFO, a socket or a device under an image's name in an image folder: refused by the listing, which stats it and
never opens it, naming it and the fix, exit 2, nothing written.

Before the fix: the listing took `mkfifo train/a/zz.png` for an image, and opening it waits for a writer, so
`relay data import` stopped at 0% and `relay validate` printed nothing, for ever. The commands run as real
processes under a timeout, so the old hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[3]
SMOKE = str(ROOT / "pipelines" / "configs" / "smoke.yaml")
HANG = 120  # seconds: the listing of 6 images takes well under one; the old code never ends


def _image_folder(root: Path) -> Path:
    for name in ("a", "b"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4, 3), i, dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


def _relay(*args: str) -> subprocess.CompletedProcess:
    """`relay ARGS` as a process of its own session; one still running after HANG seconds is killed, and fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RELAY_"))}
    child = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail(f"`relay {' '.join(args)}` still ran after {HANG} s: it opened the FIFO")
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


@pytest.mark.parametrize("command", ["import", "validate"])
def test_a_fifo_named_as_an_image_is_refused_not_opened(tmp_path: Path, command: str) -> None:
    root = _image_folder(tmp_path / "images")
    fifo = root / "train" / "a" / "zz.png"
    os.mkfifo(fifo)
    if command == "import":
        args = ["data", "import", str(root), str(tmp_path / "dest")]
    else:
        args = ["validate", SMOKE, f"run.workspace={tmp_path / 'ws'}", "data.name=imagefolder", "data.uri=null"]
        args.append(f"data.root={root}")
    done = _relay(*args)
    assert done.returncode == 2, done.stderr
    assert f"imagefolder: {fifo} (a FIFO) is not a regular file; remove it" in done.stderr, done.stderr
    assert not (tmp_path / "dest").exists() and not (tmp_path / "ws").exists()


def test_a_socket_named_as_an_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket does not hang an open (it fails), but it is no image either: said so, not that it does not decode."""
    root = _image_folder(tmp_path / "images")
    monkeypatch.chdir(root / "train" / "b")  # a relative name: a socket's path is limited to 107 bytes
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind("s.png")
        assert main(["data", "import", str(root), str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err
    assert f"imagefolder: {root / 'train' / 'b' / 's.png'} (a socket) is not a regular file; remove it" in err, err
    assert not (tmp_path / "dest").exists()


def test_several_are_named_together(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")
    fifos = [root / "train" / name / "zz.png" for name in ("a", "b")]
    for fifo in fifos:
        os.mkfifo(fifo)
    done = _relay("data", "import", str(root), str(tmp_path / "dest"))
    assert done.returncode == 2, done.stderr
    said = f"imagefolder: {fifos[0]} (a FIFO); {fifos[1]} (a FIFO) are not regular files; remove them"
    assert said in done.stderr, done.stderr
