"""Which Ray a run joins: its own local instance unless an address (or a Ray job's RAY_ADDRESS) names one.

A bare ``ray.init()`` joins the cluster named in ``<ray temp dir>/ray_current_cluster`` (someone's
`ray start`, or a head that died without `ray stop`); `relay run` and `relay tune` both go
through ``RayExecutor`` and must not (tests/cluster/test_local_ray.py runs it for real).
"""

import pytest

from orchestrator.engine import ray_session


def test_without_an_address_ray_starts_a_local_instance_with_its_resources(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    kwargs = ray_session.init_kwargs(None, 2, include_dashboard=False)
    assert kwargs["address"] == "local"
    assert kwargs["num_cpus"] == 2


@pytest.mark.parametrize("address", ["10.0.0.5:6379", "ray://10.0.0.5:10001"])
def test_an_address_is_joined_without_resources(monkeypatch, address) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    kwargs = ray_session.init_kwargs(address, 2, include_dashboard=True)
    assert kwargs["address"] == address
    assert "num_cpus" not in kwargs  # ray.init refuses resources when it joins a cluster


def test_inside_a_ray_job_the_jobs_cluster_is_joined(monkeypatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    kwargs = ray_session.init_kwargs(None, 2, include_dashboard=True)
    assert "address" not in kwargs and "num_cpus" not in kwargs  # ray.init reads RAY_ADDRESS itself


def test_a_failed_join_names_the_token_and_a_failed_start_the_machine() -> None:
    """A token cluster refuses a driver in the same words as a dead one; the hint used to be about run.num_cpus."""
    from orchestrator.engine.ray_session import init_failure

    joined = init_failure("10.0.0.5:6379", RuntimeError("Failed to connect to GCS"))
    assert "could not join the Ray cluster at 10.0.0.5:6379" in joined and "RAY_AUTH_TOKEN" in joined
    started = init_failure(None, RuntimeError("timed out"))
    assert "could not start a local Ray instance" in started and "run.num_cpus" in started
    assert "RAY_AUTH_TOKEN" not in started
