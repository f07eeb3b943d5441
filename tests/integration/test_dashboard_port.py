"""A local Ray whose dashboard loses its port between the check and the bind still starts (RayExecutor).

Its own module: the executor starts Ray only when no Ray is running in the process, and the other
RayExecutor tests keep one up for their whole module.
"""

import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import ray

from orchestrator.engine import ray_session
from orchestrator.engine.ray_executor import RayExecutor

pytestmark = pytest.mark.integration


def test_a_dashboard_port_taken_after_the_check_is_retried_on_another(monkeypatch):
    """Two runs starting at once both saw 8265 free; the one whose dashboard lost the race starts elsewhere."""
    assert not ray.is_initialized(), "a Ray instance from another test is still up in this process"
    choose = ray_session.dashboard_port
    retried: list[int] = []

    def racing(first=ray_session.DASHBOARD_PORT):
        if first == ray_session.DASHBOARD_PORT:
            return taken  # "free" when checked, held by another process when the dashboard binds it
        retried.append(choose(first))
        return retried[-1]

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        monkeypatch.setattr(ray_session, "dashboard_port", racing)
        executor = RayExecutor(num_cpus=1)
        try:
            assert ray.is_initialized()
            assert retried and retried[0] != taken
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{retried[0]}/api/version", timeout=30) as answer:
                    status = answer.status
            except urllib.error.HTTPError as refused:  # the dashboard is there and wants Ray's token
                status = refused.code
            assert status in (200, 401)
        finally:
            executor.shutdown()


STARTER = """
import ray
from ray._private.worker import get_dashboard_url
from orchestrator.engine.ray_executor import RayExecutor

executor = RayExecutor(num_cpus=1)
print("DASHBOARD", get_dashboard_url(), flush=True)
executor.shutdown()
"""


def test_two_local_starts_at_once_take_two_ports_without_losing_one():
    """Two `relay run` in the same second: the second waits for the first's dashboard, then picks another port.

    Before the lock, both could see 8265 free; the loser's dashboard failed about a minute later and
    Ray started again on another port (the warning below). Now neither start loses its port to the
    other. (What the lock cannot promise: a program that does not take it, such as a plain
    ``ray.init`` in a neighbouring test, may still take a port first; the start then moves on.)
    """
    starts = [
        subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [start.communicate(timeout=300)[0] for start in starts]
    assert [start.returncode for start in starts] == [0, 0], outputs
    ports = [line.rsplit(":", 1)[1] for out in outputs for line in out.splitlines() if line.startswith("DASHBOARD")]
    assert len(ports) == 2 and ports[0] != ports[1], outputs
    lost = [{int(port) for port in re.findall(r"lost port (\d+)", out)} for out in outputs]
    assert int(ports[1]) not in lost[0] and int(ports[0]) not in lost[1], outputs
