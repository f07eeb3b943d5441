"""The warnings of a stage Ray cannot place: at submit, a cluster too small for it; while it waits, why.

A stage that asks for more than the cluster has, or for more than is free on any one node, waits
without a word from Ray. The driver says so: ``infeasible_warning`` when it submits a stage the
cluster (in all) is too small for, ``waiting_message`` for an attempt Ray has not placed after
``WAITING_WARN_S``. Both name the nodes the cluster lost that would hold the stage, and the command
that brings one back. These are pure functions of what Ray reports (``RayExecutor`` reads it), apart
from the executor so each message is unit-tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.dag import Resources, Stage
from orchestrator.engine.demands import amounts_text, shortfall
from orchestrator.engine.fit import LostNode, most_free_on_one_node, workers_to_start

WAITING_WARN_S = 60.0  # a stage Ray has not placed after this long is said to wait, and why (once per stage)


def _short_of(resources: Resources, workers: int, total: Mapping[str, float]) -> dict[str, float]:
    """What ``workers`` of ``resources`` ask for that the cluster (``total``) has less of."""
    asked = {
        "CPU": resources.num_cpus * workers,
        "GPU": resources.num_gpus * workers,
        **{key: amount * workers for key, amount in dict(resources.custom).items()},
    }
    return shortfall(asked, total)


def infeasible_warning(
    stage: Stage,
    total: Mapping[str, float],
    lost: Sequence[LostNode] = (),
    rejoin_address: str | None = None,
) -> str | None:
    """What to warn of a stage the cluster (``total``) is too small for, or None.

    A stage that cannot start waits until an autoscaler adds nodes. Unless the cluster lost nodes
    (``lost``) that had what it lacks: then it names them and says the stage starts once such a node
    rejoins (``lost_nodes_text``). A 1-CPU stage retried after both workers of a 0-CPU-head cluster
    were killed was told to wait for an autoscaler and lower its resources; restarting one worker
    started it. A labeling stage needs only its own task to start (it labels every shard there, and
    its actors add speed where they find room), so one whose workers do not all fit runs anyway: the
    warning said it would wait, then it finished.
    """
    resources = stage.resources
    short = _short_of(resources, workers_to_start(stage), total)
    if short:
        asks = f"{stage.name} asks for {amounts_text(short)} ({workers_to_start(stage)} worker(s)) but the cluster has "
        has = amounts_text({key: total.get(key, 0) for key in short})
        if lost_could_hold(stage, total, lost):
            return f"{asks}{has}, and {lost_nodes_text(asked_amounts(resources), lost, rejoin_address)}"
        return (
            f"{asks}{has}; it will wait until an autoscaler adds nodes that have them. Lower the stage's resources "
            "or add nodes."
        )
    short = _short_of(resources, resources.workers, total)
    if not short:
        return None
    return (
        f"{stage.name}: its {resources.workers} workers ask for {amounts_text(short)} but the cluster has "
        f"{amounts_text({key: total.get(key, 0) for key in short})}; it runs on its own task, which labels the shards "
        "no actor finds room for (fewer at once). Lower its workers to what the cluster holds, or add nodes."
    )


def lost_could_hold(stage: Stage, total: Mapping[str, float], lost: Sequence[LostNode]) -> bool:
    """Whether the nodes the cluster lost would let ``stage`` start again: one of them had all one worker asks,
    and with all of them back the cluster (``total``) would have what its starting workers ask."""
    asked = asked_amounts(stage.resources)
    if not one_could_hold(asked, lost):
        return False
    regained = {key: total.get(key, 0.0) + sum(node.resources.get(key, 0.0) for node in lost) for key in asked}
    return not _short_of(stage.resources, workers_to_start(stage), regained)


def one_could_hold(asked: Mapping[str, float], lost: Sequence[LostNode]) -> bool:
    """Whether one of the ``lost`` nodes had all of ``asked`` (what one worker asks; nothing asked: False)."""
    return bool(asked) and any(not shortfall(asked, node.resources) for node in lost)


def waiting_message(
    name: str,
    asks: Resources,
    free: Mapping[str, float],
    total: Mapping[str, float],
    free_per_node: Sequence[Mapping[str, float]] | None = None,
    node_totals: Sequence[Mapping[str, float]] | None = None,
    lost: Sequence[LostNode] = (),
    rejoin_address: str | None = None,
) -> str:
    """What one unplaced stage attempt asks, what is free (in all and on one node), and why it waits.

    ``free_per_node`` / ``node_totals``: what each live node has free / in all. A worker never spans
    nodes, so where no node has as much as one worker asks in all, the stage never starts on these
    nodes: it says so and the fix (two 1-CPU nodes were told "the cluster has 1.9 CPU free ... it
    starts when they free it" for a 2-CPU worker, every minute, for ever). Unless a node the cluster
    lost (``lost``) had that much: then it names the lost nodes and says the stage starts once such a
    node rejoins (``rejoin_address``: the head's, for ``ray start``). Both workers of a 0-CPU-head
    cluster killed were told "it never starts on these nodes. Lower the stage's resources"; restarting
    one started it at once. A custom resource no node has any more is said apart: the node that had
    it may come back.
    """
    gone = [key for key, _ in asks.custom if total.get(key, 0.0) <= 0]
    head = (
        f"{name} has waited {WAITING_WARN_S:.0f} s for a place: it asks for {asks.num_cpus:g} CPU and {asks.num_gpus:g} "
        f"GPU a worker{''.join(f' and {amount:g} {key}' for key, amount in asks.custom)}, the cluster has "
        f"{free.get('CPU', 0.0):g} CPU and {free.get('GPU', 0.0):g} GPU free{split_free_note(asks, free, free_per_node)}."
    )
    if gone:
        return (
            f"{head} The cluster has no {', '.join(gone)} at all now (a node that had it was lost?); it waits until a "
            "node with it joins."
        )
    never = never_fits_note(name, asks, node_totals)
    if never:
        return f"{head} {lost_nodes_note(asks, node_totals or (), lost, rejoin_address) or never}"
    return (
        f"{head} Other work holds the rest (Tune trial drivers, kept labeling actors, other jobs); it starts when "
        "they free it. Add nodes, or lower the stage's resources, if it never does."
    )


def asked_amounts(asks: Resources) -> dict[str, float]:
    """What one worker asks of each resource (CPU, GPU, custom), amounts above 0."""
    asked = {"CPU": asks.num_cpus, "GPU": asks.num_gpus, **dict(asks.custom)}
    return {key: float(amount) for key, amount in asked.items() if amount > 0}


def never_fits_note(name: str, asks: Resources, node_totals: Sequence[Mapping[str, float]] | None) -> str:
    """``No node has 2 CPU in all (the largest has 1 CPU) ...: it never starts ...`` where no live node could ever
    hold one worker; empty where one could, or where the nodes are unknown."""
    asked = asked_amounts(asks)
    if not node_totals or not asked or any(not shortfall(asked, node) for node in node_totals):
        return ""
    largest = {key: most_free_on_one_node(node_totals, key) for key in asked}
    role = name.split(" ")[0].rsplit("/", 1)[-1]
    return (
        f"No node has {amounts_text(asked)} in all (the largest has {amounts_text(largest)}): "
        f"it never starts on these nodes. Lower the stage's resources (e.g. resources.{role}.num_cpus; "
        "more workers share the work), or add a node that large (`ray start --num-cpus N --num-gpus N`; an "
        "autoscaling cluster starts one only if it has such a node type)."
    )


def lost_nodes_note(
    asks: Resources, node_totals: Sequence[Mapping[str, float]], lost: Sequence[LostNode], rejoin_address: str | None
) -> str:
    """``No live node has 1 CPU in all ..., but the cluster lost 2 node(s): ...; it starts once such a node rejoins``
    where a lost node had all one worker asks; empty where none had (the stage is larger than any node it had)."""
    asked = asked_amounts(asks)
    if not one_could_hold(asked, lost):
        return ""
    largest = {key: most_free_on_one_node(node_totals, key) for key in asked}
    return (
        f"No live node has {amounts_text(asked)} in all (the largest has {amounts_text(largest)}), but "
        f"{lost_nodes_text(asked, lost, rejoin_address)}"
    )


def lost_nodes_text(asked: Mapping[str, float], lost: Sequence[LostNode], rejoin_address: str | None) -> str:
    """``the cluster lost 2 node(s): <id> at <ip> (1 CPU), ...; ... It starts once such a node rejoins: restart Ray
    on it (`ray start --address=<head>`).``: what the waiting and the submit-time warnings say of lost nodes that
    had what one worker asks (``asked``)."""
    named = ", ".join(
        f"{node.node_id} at {node.address} ({amounts_text({key: node.resources.get(key, 0.0) for key in asked})})"
        for node in lost
    )
    return (
        f"the cluster lost {len(lost)} node(s): {named}; a lost node had {amounts_text(asked)}. It starts once such a "
        f"node rejoins: restart Ray on it (`ray start --address={rejoin_address or '<head address>'}`)."
    )


def split_free_note(
    asks: Resources, free: Mapping[str, float], free_per_node: Sequence[Mapping[str, float]] | None
) -> str:
    """`` in all, at most X CPU on one node; a worker runs on one node`` where no node has a worker's share free and
    the most on one node is less than the cluster's total (several nodes).

    Why: after a node loss a sweep's stages waited with "the cluster has 1.8 CPU free" for a 1-CPU
    worker; the 1.8 was spread over nodes that each had 0.9 (trial drivers held the rest), so the
    total alone read as if the worker should have started. A 2-CPU worker told "1.9 CPU free" on two
    1-CPU nodes read as nearly there, though at most 1 was free on one node.
    """
    if not free_per_node:
        return ""
    asked = {"CPU": asks.num_cpus, "GPU": asks.num_gpus}
    split = [
        key
        for key, amount in asked.items()
        if amount > 0
        and most_free_on_one_node(free_per_node, key) + 1e-9 < amount
        and most_free_on_one_node(free_per_node, key) + 1e-9 < free.get(key, 0.0)
    ]
    if not split:
        return ""
    largest = " and ".join(f"{most_free_on_one_node(free_per_node, key):g} {key}" for key in split)
    return f" in all, at most {largest} on one node; a worker runs on one node"
