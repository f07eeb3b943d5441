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


class EnvironmentSeenByInit:
    """Stands in for the ray module: what RAY_API_SERVER_ADDRESS was while ``ray.init`` ran (when Ray's processes
    copy the environment). The real start beside another instance is tests/cluster/test_local_ray.py's."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def init(self, **kwargs) -> None:
        import os

        self.seen.append(os.environ.get(ray_session.API_SERVER_VARIABLE))


def test_a_local_start_names_its_dashboard_to_its_processes_and_not_to_this_one(monkeypatch) -> None:
    import os

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(ray_session.API_SERVER_VARIABLE, raising=False)
    kwargs = {**ray_session.init_kwargs(None, 2, include_dashboard=True), "dashboard_port": 8377}
    ray = EnvironmentSeenByInit()
    ray_session._start_ray(ray, kwargs)
    assert ray.seen == ["http://127.0.0.1:8377"]
    assert ray_session.API_SERVER_VARIABLE not in os.environ


def test_a_users_own_api_server_variable_comes_back_after_the_start(monkeypatch) -> None:
    import os

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv(ray_session.API_SERVER_VARIABLE, "http://10.0.0.5:8265")
    kwargs = {**ray_session.init_kwargs(None, 2, include_dashboard=True), "dashboard_port": 8377}
    ray = EnvironmentSeenByInit()
    ray_session._start_ray(ray, kwargs)
    assert ray.seen == ["http://127.0.0.1:8377"]  # the instance started here is the one its workers must ask
    assert os.environ[ray_session.API_SERVER_VARIABLE] == "http://10.0.0.5:8265"


@pytest.mark.parametrize(
    "address, include_dashboard", [("10.0.0.5:6379", True), (None, False)], ids=["join", "no-dashboard"]
)
def test_a_join_or_a_start_without_a_dashboard_leaves_the_environment_alone(
    monkeypatch, address, include_dashboard
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(ray_session.API_SERVER_VARIABLE, raising=False)
    ray = EnvironmentSeenByInit()
    ray_session._start_ray(ray, ray_session.init_kwargs(address, 2, include_dashboard=include_dashboard))
    assert ray.seen == [None]
