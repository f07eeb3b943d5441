"""A notebook's Ctrl-C while relay.run starts a real local Ray: the run reads INTERRUPTED and resumes, the kernel alive.

QA's kernel got "interrupted before the stages started; resume with: relay resume ID", yet `relay runs` showed the run
STARTING for as long as the kernel lived (its command record named the kernel's pid as the driver, and no ledger was
written), and ``relay.resume(ID)`` was refused with "still running (driver pid N) ... kill N", N the kernel itself.
A fresh interpreter stands for the kernel. Its SIGINT is sent to itself when Ray logs that its local instance
started, inside ``ray.init``: Relay defers it to the end of Ray's start, before any stage, wherever the machine's
load puts that moment. Then, in the same live process, the run is listed and resumed, and listed from another one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.relay_cli import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"

KERNEL = """
import json, logging, os, signal, subprocess, sys
import relay
signal.signal(signal.SIGINT, signal.default_int_handler)  # a kernel's Ctrl-C, whatever this process inherited

class CtrlCAtRaysStart(logging.Handler):
    fired = False
    def emit(self, record):
        if not self.fired and "Started a local Ray instance" in record.getMessage():
            self.fired = True
            os.kill(os.getpid(), signal.SIGINT)

logging.getLogger("ray").addHandler(CtrlCAtRaysStart())
config, workspace = sys.argv[1], sys.argv[2]
try:
    relay.run(config, ["train.steps=20", "crest.generations=1"], workspace=workspace, run_id="early")
    raised = False
except KeyboardInterrupt:
    raised = True
here = [row["status"] for row in relay.runs(workspace)]
listed = subprocess.run(
    [sys.executable, "-m", "orchestrator.cli", "runs", "--workspace", workspace], capture_output=True, text=True
)
elsewhere = [line.split()[2] for line in listed.stdout.splitlines() if line.startswith("early ")]
finished = relay.resume("early", workspace=workspace)
result = {"raised": raised, "here": here, "elsewhere": elsewhere, "resumed": finished.status}
print("RESULT", json.dumps(result), flush=True)
"""


def test_a_run_interrupted_while_ray_starts_reads_interrupted_and_resumes_in_the_live_kernel(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KERNEL, str(SMOKE), str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=800,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result == {"raised": True, "here": ["INTERRUPTED"], "elsewhere": ["INTERRUPTED"], "resumed": "FINISHED"}
    assert "interrupted before the stages started; resume with: relay resume early" in done.stderr
