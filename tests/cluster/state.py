"""What Ray's state API (`ray.util.state`, the data behind `ray list tasks/actors/nodes`) says about a cluster.

Run in a fresh interpreter (``python -m tests.cluster.state ADDRESS``) with RAY_AUTH_MODE=token
set before Ray is imported: Ray reads it once per process, and the test process may have
imported Ray long before. Prints one JSON object: nodes (id, custom resources, state),
tasks and actors (name, node, state); ``query`` is the test side of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from tests.cluster.cluster import wait_for

TASK_LIMIT = 10_000


def dump(address: str) -> dict[str, Any]:
    from ray.util.state import list_actors, list_nodes, list_tasks

    nodes = [
        {"node_id": n.node_id, "resources": dict(n.resources_total or {}), "state": n.state, "is_head": n.is_head_node}
        for n in list_nodes(address=address, limit=100, detail=True)
    ]
    tasks = [
        {"name": t.name, "node_id": t.node_id, "state": t.state, "type": t.type, "job_id": t.job_id}
        for t in list_tasks(address=address, limit=TASK_LIMIT, detail=True, raise_on_missing_output=False)
    ]
    actors = [
        {
            "name": a.name,
            "class_name": a.class_name,
            "node_id": a.node_id,
            "state": a.state,
            "pid": a.pid,
            "job_id": a.job_id,
        }
        for a in list_actors(address=address, limit=TASK_LIMIT, detail=True, raise_on_missing_output=False)
    ]
    return {"nodes": nodes, "tasks": tasks, "actors": actors}


@dataclass
class ClusterState:
    """One snapshot of the state API, with lookups by name and by custom resource."""

    nodes: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    actors: list[dict[str, Any]]

    def node_of(self, resource: str) -> str:
        """The id of the alive node started with custom resource ``resource`` (node_a, head, ...)."""
        found = [n["node_id"] for n in self.nodes if resource in n["resources"] and n["state"] == "ALIVE"]
        assert len(found) == 1, f"expected one alive node with {resource}: {self.nodes}"
        return found[0]

    def resource_of(self, node_id: str) -> str:
        """The custom resource that names node ``node_id``."""
        node = next(n for n in self.nodes if n["node_id"] == node_id)
        return next(name for name in node["resources"] if name in ("head", "node_a", "node_b"))

    def task_nodes(self, name: str, job_id: str) -> set[str]:
        """Where the tasks called ``name`` of Ray job ``job_id`` ran (other runs on the cluster reuse stage names)."""
        return {t["node_id"] for t in self.tasks if t["name"] == name and t["job_id"] == job_id and t["node_id"]}

    def actors_named(self, prefix: str, job_id: str) -> list[dict[str, Any]]:
        return [a for a in self.actors if (a["name"] or "").startswith(prefix) and a["job_id"] == job_id]


def query(address: str, env: dict[str, str]) -> ClusterState:
    """The state API's view of the cluster at ``address`` (the dashboard), read by a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.cluster.state", address],
        env={**env, "RAY_AUTH_MODE": "token"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return ClusterState(**json.loads(done.stdout.strip().splitlines()[-1]))


def wait_for_actors(
    address: str, env: dict[str, str], prefix: str, timeout_s: float, count: int = 1, job_id: str | None = None
) -> list[dict[str, Any]]:
    """The ALIVE actors whose name or class starts with ``prefix`` (of Ray job ``job_id``), once there are ``count``."""

    def alive() -> list[dict[str, Any]] | None:
        state = query(address, env)
        found = [
            a
            for a in state.actors
            if a["state"] == "ALIVE"
            and ((a["name"] or "").startswith(prefix) or a["class_name"] == prefix)
            and job_id in (None, a["job_id"])
        ]
        return found if len(found) >= count else None

    return wait_for(alive, timeout_s, f"{count} alive actor(s) {prefix!r}", poll_s=1.0)


if __name__ == "__main__":
    print(json.dumps(dump(sys.argv[1])))
