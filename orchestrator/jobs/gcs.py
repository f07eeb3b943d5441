"""What a cluster's GCS says of its nodes, asked before a driver joins (ray.init).

In the jobs package because it reads Ray's own protobuf messages (the one package besides the
engine's Ray modules that may import Ray), lazily, as the rest of the package does.
"""

from __future__ import annotations

from orchestrator.jobs.connection import find_auth_token

GCS_NODES_METHOD = "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo"  # what `ray list nodes` reads


def gcs_node_resources(address: str, timeout_s: float) -> list[dict[str, float]] | None:
    """The total resources of each alive node of the cluster whose GCS is at ``address``; None if it cannot say.

    Asked of the GCS itself (GetAllNodeInfo, what `ray list nodes` reads), before ray.init: the
    join must not be what tells that a stage could never start.
    """
    import grpc
    from ray.core.generated import gcs_pb2, gcs_service_pb2

    token = find_auth_token()
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        get_nodes = channel.unary_unary(
            GCS_NODES_METHOD,
            request_serializer=gcs_service_pb2.GetAllNodeInfoRequest.SerializeToString,
            response_deserializer=gcs_service_pb2.GetAllNodeInfoReply.FromString,
        )
        try:
            reply = get_nodes(gcs_service_pb2.GetAllNodeInfoRequest(), timeout=timeout_s, metadata=metadata)
        except grpc.RpcError:
            return None
    alive = [node for node in reply.node_info_list if node.state == gcs_pb2.GcsNodeInfo.ALIVE]
    return [dict(node.resources_total) for node in alive]
