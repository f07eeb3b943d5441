"""The cluster configs parse and hold the keys Relay relies on.

Nothing here talks to a cloud or Kubernetes: the files are parsed, `ray up`
configs are checked against Ray's own JSON schema (what `ray up` validates
first), and the KubeRay manifests are checked field by field.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
RAY_UP_FILES = ["aws-gpu.yaml", "onprem.yaml"]
KUBERAY_FILES = ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"]
RAY_IMAGE = "rayproject/ray:2.60.0-py311-gpu"


def load_docs(name: str) -> list[dict[str, Any]]:
    with open(CLUSTER / name) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def by_kind(name: str, kind: str) -> dict[str, Any]:
    matches = [doc for doc in load_docs(name) if doc.get("kind") == kind]
    assert len(matches) == 1, f"{name}: expected one {kind}, got {len(matches)}"
    return matches[0]


def ray_cluster_spec(name: str) -> dict[str, Any]:
    if name.endswith("rayjob.yaml"):
        return by_kind(name, "RayJob")["spec"]["rayClusterSpec"]
    return by_kind(name, "RayCluster")["spec"]


def containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_template["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container.get("env", [])}


def all_ray_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    found = containers(spec["headGroupSpec"]["template"])
    for group in spec["workerGroupSpecs"]:
        found = found + containers(group["template"])
    return found


# --------------------------------------------------------------------------- all files


def test_every_yaml_in_cluster_is_covered_and_parses():
    files = sorted(str(path.relative_to(CLUSTER)) for path in CLUSTER.rglob("*.yaml"))
    assert files == sorted(RAY_UP_FILES + KUBERAY_FILES), "add new cluster files to this test"
    for name in files:
        assert load_docs(name), f"{name} is empty"


# --------------------------------------------------------------------------- ray up


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_config_matches_rays_schema(name):
    """The same JSON schema `ray up` validates against (shipped inside the ray package)."""
    jsonschema = pytest.importorskip("jsonschema")
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed")
    schema_path = Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"
    jsonschema.validate(load_docs(name)[0], json.loads(schema_path.read_text()))


@pytest.mark.parametrize("name", RAY_UP_FILES)
def test_ray_up_config_runs_relay_with_token_auth_and_dashboard(name):
    config = load_docs(name)[0]
    assert config["cluster_name"]
    assert config["provider"]["type"]
    image = config.get("docker", {}).get("image", "")
    setup = " ".join(config.get("setup_commands", []))
    assert "relay" in image or "pip install" in setup, "the nodes must have Relay installed"
    head = " ".join(config["head_start_ray_commands"])
    assert "--include-dashboard=true" in head and "8265" in head
    assert "RAY_AUTH_MODE=token" in head
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert "~/.ray/auth_token" in config["file_mounts"].values()
    assert any("/mnt/relay" in option for option in config["docker"]["run_options"])


def test_aws_config_has_gpu_workers_and_a_valid_head_type():
    config = load_docs("aws-gpu.yaml")[0]
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no GPU worker type"
    instances = {t["node_config"]["InstanceType"] for t in gpu_types.values()}
    assert all(re.match(r"g[56]\.", instance) for instance in instances), instances
    assert sum(t.get("min_workers", 0) for t in gpu_types.values()) >= 1, "start at least one GPU node"
    assert sum(t.get("min_workers", 0) for t in types.values()) <= config["max_workers"]


def test_onprem_config_uses_the_local_provider_without_node_types():
    config = load_docs("onprem.yaml")[0]
    provider = config["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and provider["worker_ips"]
    # ray up aborts on available_node_types for the local provider (Ray detects resources).
    assert "available_node_types" not in config and "head_node_type" not in config


# --------------------------------------------------------------------------- KubeRay


@pytest.mark.parametrize("name", KUBERAY_FILES)
def test_kuberay_cluster_spec(name):
    spec = ray_cluster_spec(name)
    assert spec["rayVersion"] == "2.60.0"
    assert spec["headGroupSpec"]["rayStartParams"] is not None
    gpu_limits = [
        container["resources"]["limits"].get("nvidia.com/gpu", 0)
        for group in spec["workerGroupSpecs"]
        for container in containers(group["template"])
    ]
    assert any(int(limit) >= 1 for limit in gpu_limits), "no worker container asks for nvidia.com/gpu"
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


@pytest.mark.parametrize("name", KUBERAY_FILES)
def test_kuberay_token_auth_from_a_secret_in_every_ray_container(name):
    spec = ray_cluster_spec(name)
    for container in all_ray_containers(spec):
        env = env_of(container)
        assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth_token"
    autoscaler_env = {item["name"] for item in spec.get("autoscalerOptions", {}).get("env", [])}
    if spec.get("enableInTreeAutoscaling"):
        assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} <= autoscaler_env


@pytest.mark.parametrize("name", KUBERAY_FILES)
def test_kuberay_shared_workspace_is_a_rwx_pvc_at_mnt_relay(name):
    pvc = by_kind(name, "PersistentVolumeClaim")
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    spec = ray_cluster_spec(name)
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for template in templates:
        claims = {
            volume["name"]: volume["persistentVolumeClaim"]["claimName"]
            for volume in template["spec"]["volumes"]
            if "persistentVolumeClaim" in volume
        }
        for container in containers(template):
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert claims[mounts["/mnt/relay"]] == pvc["metadata"]["name"]
            assert env_of(container)["RELAY_WORKSPACE"]["value"] == "/mnt/relay"


def test_rayjob_runs_relay_and_retries_on_driver_loss():
    job = by_kind("kuberay/rayjob.yaml", "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("relay run ")
    assert "run.workspace=/mnt/relay" in spec["entrypoint"]
    config = spec["entrypoint"].split()[2]
    assert (CLUSTER.parent / config).is_file(), f"{config} is not in the repository"
    assert spec["backoffLimit"] >= 1
    assert spec["shutdownAfterJobFinishes"] is True
    submitter_env = env_of(containers(spec["submitterPodTemplate"])[0])
    assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} <= set(submitter_env)


def test_rayjob_uses_the_same_cluster_spec_as_raycluster():
    cluster = by_kind("kuberay/raycluster.yaml", "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert ray_cluster_spec("kuberay/rayjob.yaml") == cluster["spec"]
    assert by_kind("kuberay/rayjob.yaml", "PersistentVolumeClaim") == by_kind(
        "kuberay/raycluster.yaml", "PersistentVolumeClaim"
    )


# --------------------------------------------------------------------------- image


def test_dockerfile_builds_on_the_ray_gpu_image_and_installs_relay():
    lines = [line.strip() for line in (CLUSTER / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == f"FROM {RAY_IMAGE}"
    text = "\n".join(instructions)
    assert re.search(r"pip install[^\n]*torch torchvision", text)
    assert "download.pytorch.org/whl/" in text, "install the CUDA build of torch"
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", text), "install the project: pip install ."
    assert "COPY" in text and "pyproject.toml" in text
