"""`run.object_store_memory`: the object store of the local Ray instance Relay starts, as bytes or a size.

Why the key: under a memory cap (``prlimit --as``, a container's limit) Ray's default store (30% of the
machine's memory) could not be mapped and Ray did not start; nothing in a config could make it smaller.
tests/integration/test_ray_start_under_a_memory_cap.py starts Ray with it under such a cap.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import PipelineConfig, RunSettings, validate_config
from orchestrator.engine import ray_session
from orchestrator.errors import ConfigError


@pytest.mark.parametrize(
    ("written", "size"),
    [
        (2_000_000_000, 2_000_000_000),
        ("2GB", 2 * 10**9),
        ("1.5 GiB", 3 * 2**29),
        ("512MiB", 512 * 2**20),
        ("300mb", 300 * 10**6),
        (None, None),
    ],
)
def test_a_size_is_read_in_bytes(written, size) -> None:
    assert RunSettings(object_store_memory=written).object_store_memory == size


def problems(run: dict) -> str:
    with pytest.raises(ConfigError) as refused:
        validate_config(PipelineConfig, {"pipeline": "crest", "name": "x", "run": run})
    return str(refused.value)


@pytest.mark.parametrize("written", ["2XB", "lots", "-2GB", "2 G B"])
def test_a_value_that_is_not_a_size_is_refused_with_the_forms_that_are(written) -> None:
    said = problems({"object_store_memory": written})
    assert "run.object_store_memory" in said and "is not a size" in said and "512MiB" in said


def test_a_store_below_rays_floor_is_refused_before_ray_is_started() -> None:
    said = problems({"object_store_memory": "10MB"})
    assert "run.object_store_memory" in said and "at least 75MiB" in said


@pytest.mark.parametrize("address", ["10.0.0.5:6379", "ray://10.0.0.5:10001", "auto"])
def test_a_store_size_beside_a_cluster_address_is_refused(address) -> None:
    """ray.init refuses object_store_memory when it joins a cluster; the cluster's nodes set their own."""
    said = problems({"object_store_memory": "2GB", "ray_address": address})
    assert f"run.ray_address={address} joins a cluster" in said and "remove one of the two keys" in said


def test_a_store_size_with_a_local_address_starts_that_instance_with_it(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert RunSettings(object_store_memory="1GB", ray_address="local").object_store_memory == 10**9
    kwargs = ray_session.init_kwargs("local", 2, include_dashboard=False, object_store_memory=10**9)
    assert kwargs["address"] == "local" and kwargs["object_store_memory"] == 10**9 and kwargs["num_cpus"] == 2


def test_a_joined_cluster_gets_no_store_size(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    kwargs = ray_session.init_kwargs("10.0.0.5:6379", None, include_dashboard=True, object_store_memory=10**9)
    assert "object_store_memory" not in kwargs  # ray.init: "must not be provided" when connecting


@pytest.mark.parametrize(
    ("log", "line", "fix"),
    [
        (
            "raylet.err",
            "[2026-12-05 19:56:19,368 E 20087 20096] (raylet) dlmalloc.cc:215: mmap failed with error: Cannot "
            "allocate memory",
            "set run.object_store_memory lower",
        ),
        (
            "gcs_server.err",
            "[2026-12-05 19:56:19,368 C 20087 20087] (gcs_server) grpc_server.cc:101: Failed to bind to port "
            "6379: Address already in use",
            "`ray stop`",
        ),
        (
            "raylet.out",
            "[2026-12-05 19:56:19,368 E 20087 20087] (raylet) io.cc:42: write failed: No space left on device",
            "RAY_TMPDIR",
        ),
    ],
)
def test_the_cause_rays_logs_name_is_said_with_its_fix(tmp_path: Path, log: str, line: str, fix: str) -> None:
    (tmp_path / log).write_text(f"some start-up line\n{line}\n*** StackTrace Information ***\n")
    cause = ray_session.start_failure_cause(tmp_path)
    assert cause is not None and fix in cause
    assert f"{log}: " in cause and "(raylet)" not in cause and "[2026" not in cause  # Ray's prefix dropped


def test_logs_without_a_known_cause_are_named_for_a_person_to_read(tmp_path: Path) -> None:
    (tmp_path / "raylet.err").write_text("nothing anyone recognises\n")
    said = ray_session.local_start_failure(RuntimeError("The current node timed out during startup"), tmp_path)
    assert "timed out during startup" in said and "run.num_cpus lower" in said and str(tmp_path) in said


def test_a_sweep_starts_its_local_instance_with_the_store_size_too() -> None:
    """`relay tune` starts Ray through the plan, as it passes run.num_cpus."""
    from orchestrator.config import load_yaml
    from orchestrator.tune.plan import plan_sweep
    from pipelines.builders import crest

    data = load_yaml(Path(__file__).resolve().parents[3] / "pipelines" / "configs" / "smoke.yaml")
    data["run"] = {**data["run"], "object_store_memory": "1GB"}
    config = validate_config(crest.CrestConfig, data)
    assert plan_sweep(data, config, crest.build, "code", source="test").object_store_memory == 10**9
