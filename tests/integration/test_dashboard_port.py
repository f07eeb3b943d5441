"""A local Ray whose dashboard loses its port between the check and the bind still starts (RayExecutor).

Its own module: the executor starts Ray only when no Ray is running in the process, and the other
RayExecutor tests keep one up for their whole module.
"""

import socket
import urllib.error
import urllib.request

import pytest
import ray

from orchestrator.engine import executors
from orchestrator.engine.executors import RayExecutor

pytestmark = pytest.mark.integration


def test_a_dashboard_port_taken_after_the_check_is_retried_on_another(monkeypatch):
    """Two runs starting at once both saw 8265 free; the one whose dashboard lost the race starts elsewhere."""
    assert not ray.is_initialized(), "a Ray instance from another test is still up in this process"
    choose = executors.dashboard_port
    retried: list[int] = []

    def racing(preferred=None):
        if preferred is None:
            return taken  # "free" when checked, held by another process when the dashboard binds it
        retried.append(choose(preferred))
        return retried[-1]

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        monkeypatch.setattr(executors, "dashboard_port", racing)
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
