"""`relay data info DATASET --verify` draws progress bars on a terminal, and keeps a pipe's output clean.

Before the fix: on 2M rows it printed nothing for 18 s while it hashed every shard and decoded every image. The
command runs as a real process, its stderr a pseudo-terminal (a TTY) or a pipe; the dataset is real Parquet.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.unit.pipelines.datasets.toy import write_toy

ROOT = Path(__file__).resolve().parents[4]


def _info(dataset: Path, stderr: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RELAY_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "data", "info", str(dataset), "--verify"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def _terminal_text(child: subprocess.Popen, terminal: int) -> str:
    """Everything ``child`` wrote to the terminal whose master end is ``terminal``, read until it exits."""
    chunks = []
    while True:
        ready, _, _ = select.select([terminal], [], [], 1.0)
        if ready:
            try:
                data = os.read(terminal, 4096)
            except OSError:  # the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        elif child.poll() is not None:
            break
    return b"".join(chunks).decode(errors="replace")


def test_verify_draws_its_bars_on_a_terminal(tmp_path: Path) -> None:
    write_toy(tmp_path / "d", n=100, test=10)
    terminal, its_end = pty.openpty()
    fcntl.ioctl(its_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new one is 0 columns wide
    try:
        child = _info(tmp_path / "d", its_end)
        os.close(its_end)
        drawn = _terminal_text(child, terminal)
        out = child.stdout.read()
        assert child.wait(timeout=120) == 0, drawn
    finally:
        os.close(terminal)
    assert "verify sha256" in drawn and "verify images" in drawn, drawn
    assert "/110 [" in drawn, drawn  # the images bar counts the rows of both splits
    assert "every image decodes" in out


def test_verify_into_a_pipe_prints_no_bar(tmp_path: Path) -> None:
    write_toy(tmp_path / "d", n=100)
    child = _info(tmp_path / "d", subprocess.PIPE)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert "verify" not in err and "every image decodes" in out
