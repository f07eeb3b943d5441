"""Ray Jobs: send a pipeline to a cluster, then watch, read and stop it.

`relay submit / status / logs / stop / jobs` are thin shells over these plain
functions. Each one takes the dashboard address (``http://HOST:8265``), talks to
the cluster's Jobs server over HTTP and turns every failure into one
``RelayError`` that says what to do. Ray is imported inside the functions so
that ``relay --help`` does not pay for it. Seven modules: ``auth`` (the token),
``connection`` (address, probe, errors), ``gcs`` (what a cluster's GCS says),
``submit`` (the job request and its entrypoint), ``upload`` (what the working
folder leaves out), ``capacity`` (whether the cluster can hold the pipeline) and
``watch`` (status, logs, stop, list, wait).

Token authentication (Ray 2.59+): a cluster started while a token exists
(``ray get-auth-token --generate`` writes ``~/.ray/auth_token``; ``ray.init()``
local clusters create one) rejects requests without ``Authorization: Bearer``.
Ray's client reads ``RAY_AUTH_MODE`` only once, when ``ray._raylet`` is first
imported, so setting it later in the same process has no effect. We therefore
resolve the token ourselves (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``,
``~/.ray/auth_token``, in Ray's own order) and pass the header explicitly.
"""

from orchestrator.jobs.auth import (
    TOKEN_PATH_FIX,
    auth_headers,
    default_token_path,
    find_auth_token,
    token_mode_for_joining,
    token_path_problem,
)
from orchestrator.jobs.capacity import (
    check_cluster_resources,
    check_workers_fit,
    cluster_totals,
    largest_node,
    node_resources,
    oversized_workers,
    worker_requests,
)
from orchestrator.jobs.connection import (
    DEFAULT_DASHBOARD_PORT,
    AddressError,
    AuthTokenError,
    ClusterUnreachableError,
    InsufficientResourcesError,
    JobIdTakenError,
    JobNotFoundError,
    JobsError,
    JobStillRunningError,
    JobTimeoutError,
    NotADashboardError,
    check_dashboard,
    check_job_id_free,
    connect,
    resolve_address,
    server_auth_mode,
)
from orchestrator.jobs.gcs import ANSWERED as GCS_ANSWERED
from orchestrator.jobs.gcs import gcs_dashboard, gcs_node_resources, gcs_probe
from orchestrator.jobs.submit import (
    active_job,
    check_amounts,
    check_no_active_job,
    config_path_warning,
    free_submission_id,
    jobs_of_run,
    latest_job_of,
    pipeline_entrypoint,
    readable_entrypoint,
    relay_env_vars,
    resource_problem,
    resume_entrypoint,
    submit_entrypoint,
    submit_pipeline,
)
from orchestrator.jobs.upload import WORKING_DIR_EXCLUDES, build_runtime_env, inside_excludes
from orchestrator.jobs.watch import (
    TERMINAL_STATUSES,
    follow_logs,
    job_details,
    job_logs,
    job_outcome,
    job_status,
    list_jobs,
    stop_job,
    wait_for_job,
)

__all__ = [
    "DEFAULT_DASHBOARD_PORT",
    "GCS_ANSWERED",
    "TERMINAL_STATUSES",
    "TOKEN_PATH_FIX",
    "WORKING_DIR_EXCLUDES",
    "AddressError",
    "AuthTokenError",
    "ClusterUnreachableError",
    "InsufficientResourcesError",
    "JobIdTakenError",
    "JobNotFoundError",
    "JobStillRunningError",
    "JobTimeoutError",
    "JobsError",
    "NotADashboardError",
    "active_job",
    "auth_headers",
    "build_runtime_env",
    "check_amounts",
    "check_cluster_resources",
    "check_dashboard",
    "check_job_id_free",
    "check_no_active_job",
    "check_workers_fit",
    "cluster_totals",
    "config_path_warning",
    "connect",
    "default_token_path",
    "find_auth_token",
    "follow_logs",
    "free_submission_id",
    "gcs_dashboard",
    "gcs_node_resources",
    "gcs_probe",
    "inside_excludes",
    "job_details",
    "job_logs",
    "job_outcome",
    "job_status",
    "jobs_of_run",
    "largest_node",
    "latest_job_of",
    "list_jobs",
    "node_resources",
    "oversized_workers",
    "pipeline_entrypoint",
    "readable_entrypoint",
    "relay_env_vars",
    "resolve_address",
    "resource_problem",
    "resume_entrypoint",
    "server_auth_mode",
    "stop_job",
    "submit_entrypoint",
    "submit_pipeline",
    "token_mode_for_joining",
    "token_path_problem",
    "wait_for_job",
    "worker_requests",
]
