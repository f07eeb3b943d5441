"""A notebook's process after relay.run and relay.resume on a real local Ray: its environment as it was, pdb its own.

QA's process kept what Relay and Ray had set (RAY_AUTH_MODE, RAY_USAGE_STATS_ENABLED, MLflow's client settings) and
Ray's PYTHONBREAKPOINT=ray.util.rpdb._driver_set_trace, so the user's ``breakpoint()`` no longer opened pdb. A fresh
interpreter stands for the notebook: Ray starts twice in it (the run, then its resume), and its ``breakpoint()`` is
answered on stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.relay_cli import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

SMOKE = ROOT / "pipelines" / "configs" / "smoke.yaml"
# What Relay and Ray set in a process. A notebook starts without them; this test's own process may not: an earlier
# test's ray.init in the same pytest worker left PYTHONBREAKPOINT set, the fresh interpreter inherited it, and its
# breakpoint() went to Ray's debugger though the call had given back exactly the environment it found (CI, once).
SET_BY_RELAY_OR_RAY = ("PYTHONBREAKPOINT", "RAY_AUTH_MODE", "MLFLOW_HTTP_REQUEST_", "MLFLOW_SUPPRESS_PRINTING_URL")

NOTEBOOK = """
import json, os, sys
import relay
before = dict(os.environ)
def changed():
    after = dict(os.environ)
    return {name: (before.get(name), after.get(name)) for name in set(before) | set(after) if before.get(name) != after.get(name)}
stopped = relay.run(sys.argv[1], ["train.steps=20", "crest.generations=1"], workspace=sys.argv[2], stop_after="g00/train")
after_run = changed()
finished = relay.resume(stopped.run_id, workspace=sys.argv[2])
print("RESULT", json.dumps({"run": after_run, "resume": changed(), "status": finished.status}), flush=True)
breakpoint()
print("after the breakpoint", flush=True)
"""


def test_run_and_resume_on_ray_give_the_notebook_its_environment_and_its_pdb_back(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NOTEBOOK, str(SMOKE), str(tmp_path / "ws")],
        input="continue\n",
        capture_output=True,
        text=True,
        timeout=800,
        cwd=tmp_path,
        env={name: value for name, value in os.environ.items() if not name.startswith(SET_BY_RELAY_OR_RAY)},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result == {"run": {}, "resume": {}, "status": "FINISHED"}
    assert "(Pdb)" in done.stdout and "after the breakpoint" in done.stdout  # the standard pdb, answered on stdin
