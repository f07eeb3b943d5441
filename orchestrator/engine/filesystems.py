"""The pyarrow filesystem of a store URI, with S3 requests that give up within a bounded time.

Why: ``pafs.FileSystem.from_uri`` leaves S3's timeouts unset, and with them unset a request to a
store that stops answering (a stalled endpoint, a paused server: TCP still accepts, nothing replies)
waits until the store answers again: a run sat silent for minutes, shown RUNNING. An S3 filesystem
from here waits at most ``REQUEST_TIMEOUT_S`` for a request's next byte (``CONNECT_TIMEOUT_S`` for a
connection) and makes ``ATTEMPTS`` attempts in all, so

- a stall shorter than about ``ATTEMPTS * REQUEST_TIMEOUT_S`` (90 s), or a store that comes back
  within it, costs a wait, not the run;
- a store that stays silent fails a request after about 90 s (3 attempts of 30 s; 30 s in all when
  no connection opens), with curl's "Timeout was reached", which Relay's messages name as a store
  that does not answer (``orchestrator.engine.store_faults.store_failure``).

A run whose store stops answering mid-run makes about four such requests before it stops (the output's
write, 2; the run record's two updates), so it fails within about 6 minutes, saying how to resume:
hence 30 s and not more. Not less either: S3 servers keep a long server-side copy (how a file is
renamed into place) talking with whitespace, but a loaded one may still stay silent for seconds.
Other filesystems are returned as ``from_uri`` made them. (Measured against a paused moto server:
the output's write failed after 181 s, the run after 365 s.) Ray Train's checkpoints of a
data-parallel stage go through this filesystem too: it is handed to Ray as ``storage_filesystem``
(``orchestrator.engine.train_run.train_storage``).
"""

from __future__ import annotations

import pyarrow.fs as pafs

CONNECT_TIMEOUT_S = 10.0  # opening a connection: an endpoint that answers does so in well under a second
REQUEST_TIMEOUT_S = 30.0  # curl's low-speed limit: a request with no byte moved for this long is abandoned
ATTEMPTS = 3  # per request, the first included (AWS's standard retry mode, with its short backoff)


def filesystem_from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """``pafs.FileSystem.from_uri(uri)``, its S3 filesystem rebuilt with Relay's timeouts and retries.

    The rebuild starts from the options ``from_uri`` resolved (the endpoint of the URI's query or of
    ``$AWS_ENDPOINT_URL``, the scheme, the region, credentials given in the URI, bucket creation), read
    through the filesystem's pickle form, the one public view of them pyarrow gives; credentials that
    came from the environment or a profile are looked up again the same way. Raises what ``from_uri``
    raises (ValueError, ``pa.ArrowInvalid``) for a URI it cannot use.
    """
    filesystem, path = pafs.FileSystem.from_uri(uri)
    if isinstance(filesystem, pafs.S3FileSystem):
        filesystem = patient_s3(filesystem)
    return filesystem, path


def patient_s3(filesystem: pafs.S3FileSystem) -> pafs.S3FileSystem:
    """The same S3 filesystem with ``CONNECT_TIMEOUT_S``, ``REQUEST_TIMEOUT_S`` and ``ATTEMPTS``."""
    _, (options,) = filesystem.__reduce__()
    options.update(
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=REQUEST_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=ATTEMPTS),
    )
    return pafs.S3FileSystem(**options)
