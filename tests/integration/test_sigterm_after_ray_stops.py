"""A SIGTERM after the driver stopped its local Ray instance (or while it stops it) still ends it as terminated.

Ray's core worker puts back, as ``ray.shutdown`` deletes it, the SIGTERM action the process had when Ray started
(the default), while Python still names Relay's handler (``signals.terminate_as_interrupt``). A SIGTERM from then
on, while a run that ended lets MLflow finish its record, killed `relay run` outright: no line, its MLflow runs
left RUNNING. Real processes, a real local Ray instance and real signals: a driver in a subprocess starts Ray as
`relay run` does (``RayExecutor``), stops it, and sends itself SIGTERM; a second driver sends it from inside
Ray's stop, the point right after the core worker put the default back.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.integration.relay_cli import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from orchestrator.engine.ray_executor import RayExecutor
    from orchestrator.engine.signals import Terminated

    executor = RayExecutor(num_cpus=1, include_dashboard=False)
    if sys.argv[1] == "inside":  # right after the core worker is gone, as Ray's processes are stopped
        node = executor._ray._private.worker._global_node
        kill = node.kill_all_processes
        def kill_after_sigterm(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
            print("sent inside the stop", flush=True)
            return kill(*args, **kwargs)
        node.kill_all_processes = kill_after_sigterm
    try:
        executor.shutdown()
        print("Ray stopped", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 5)  # time for a signal to act; a handled one raised already
        print("not terminated", flush=True)
    except Terminated:
        print("terminated, Ray running:", executor._ray.is_initialized(), flush=True)
        sys.exit(143)
    """
)


@pytest.mark.parametrize("when", ["after", "inside"])
def test_a_sigterm_once_ray_stops_raises_terminated_in_the_driver(when: str) -> None:
    done = subprocess.run([sys.executable, "-c", DRIVER, when], cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 143, (
        f"exit {done.returncode} (-15: killed by the signal's default action)\n{output[-3000:]}"
    )
    assert "terminated, Ray running: False" in done.stdout, output[-3000:]
    if when == "inside":  # held until Ray had stopped, then raised
        assert "sent inside the stop" in done.stdout and "Ray stopped" not in done.stdout, output[-3000:]
    else:
        assert "Ray stopped" in done.stdout, output[-3000:]
