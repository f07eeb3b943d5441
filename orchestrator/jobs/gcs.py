"""What a cluster's GCS says, asked over gRPC: whether a server is one, its nodes, where its dashboard is.

In the jobs package because it reads Ray's own protobuf messages (the one package besides the
engine's Ray modules that may import Ray), lazily, as the rest of the package does. The probe
(``gcs_probe``) passes raw bytes instead, so that it can run before Ray is imported.
"""

from __future__ import annotations

from orchestrator.jobs.auth import find_auth_token

GCS_NODES_METHOD = "/ray.rpc.NodeInfoGcsService/GetAllNodeInfo"  # what `ray list nodes` reads
GCS_PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"  # the first call ray.init makes to a GCS
GCS_KV_GET_METHOD = "/ray.rpc.InternalKVGcsService/InternalKVGet"
DASHBOARD_KEY = b"dashboard"  # where the dashboard puts its HOST:PORT (Ray's DASHBOARD_ADDRESS, in its namespace)
ANSWERED = "OK"  # what gcs_probe says of a GCS that answered


def _token_metadata() -> list[tuple[str, str]] | None:
    token = find_auth_token()
    return [("authorization", f"Bearer {token}")] if token else None


def gcs_probe(address: str, timeout_s: float) -> str:
    """The gRPC status of one GetClusterId call to ``address`` (HOST:PORT): ``ANSWERED`` from a GCS that let us in.

    One call of the GCS's own first method (an empty request, as ray.init makes first) tells
    servers apart in milliseconds: an HTTP/1 server fails the HTTP/2 handshake (UNAVAILABLE),
    another gRPC server does not know the method (UNIMPLEMENTED), a GCS answers or refuses the
    token (UNAUTHENTICATED). The request and reply are raw bytes: Ray itself is not imported
    (``find_auth_token`` must set RAY_AUTH_MODE first).
    """
    import grpc

    with grpc.insecure_channel(address) as channel:
        get_cluster_id = channel.unary_unary(GCS_PROBE_METHOD, request_serializer=bytes, response_deserializer=bytes)
        try:
            get_cluster_id(b"", timeout=timeout_s, metadata=_token_metadata())
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return ANSWERED


def gcs_dashboard(address: str, timeout_s: float) -> str | None:
    """``http://HOST:PORT`` of the dashboard of the cluster whose GCS is at ``address``, as the dashboard recorded
    it there; None if it cannot say (no dashboard, a token refused).

    Why: given the GCS port, the job commands can name the address they need instead of the default 8265.
    """
    import grpc
    from ray.core.generated import gcs_service_pb2

    with grpc.insecure_channel(address) as channel:
        kv_get = channel.unary_unary(
            GCS_KV_GET_METHOD,
            request_serializer=gcs_service_pb2.InternalKVGetRequest.SerializeToString,
            response_deserializer=gcs_service_pb2.InternalKVGetReply.FromString,
        )
        request = gcs_service_pb2.InternalKVGetRequest(key=DASHBOARD_KEY, namespace=DASHBOARD_KEY)
        try:
            reply = kv_get(request, timeout=timeout_s, metadata=_token_metadata())
        except grpc.RpcError:
            return None
    value = reply.value.decode(errors="replace").strip()
    return f"http://{value}" if value and reply.status.code == 0 else None


def gcs_node_resources(address: str, timeout_s: float) -> list[dict[str, float]] | None:
    """The total resources of each alive node of the cluster whose GCS is at ``address``; None if it cannot say.

    Asked of the GCS itself (GetAllNodeInfo, what `ray list nodes` reads), before ray.init: the
    join must not be what tells that a stage could never start.
    """
    import grpc
    from ray.core.generated import gcs_pb2, gcs_service_pb2

    with grpc.insecure_channel(address) as channel:
        get_nodes = channel.unary_unary(
            GCS_NODES_METHOD,
            request_serializer=gcs_service_pb2.GetAllNodeInfoRequest.SerializeToString,
            response_deserializer=gcs_service_pb2.GetAllNodeInfoReply.FromString,
        )
        try:
            reply = get_nodes(gcs_service_pb2.GetAllNodeInfoRequest(), timeout=timeout_s, metadata=_token_metadata())
        except grpc.RpcError:
            return None
    alive = [node for node in reply.node_info_list if node.state == gcs_pb2.GcsNodeInfo.ALIVE]
    return [dict(node.resources_total) for node in alive]
