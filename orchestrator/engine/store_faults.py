"""Why a store failed, as far as its error says: it refused the credentials, or it did not answer.

One classifier for every message about a store (the run's preflight, stage outputs, the run
record, `relay data`). It is apart from the artifact store because most of its callers never open
one: the CLI's checks ask it of errors from a dataset's import, a data URI's probe or a run's
record, and each calls for another fix.
"""

from __future__ import annotations

from enum import Enum

from orchestrator.errors import exception_chain

# pyarrow raises every S3 (and GCS) failure as a plain OSError: only its text, AWS's error names and
# curl's messages, tells a store that refuses the credentials from one that does not answer.
DENIED_MARKERS = (
    "ACCESS_DENIED",
    "INVALID_ACCESS_KEY_ID",
    "SIGNATURE_DOES_NOT_MATCH",
    "EXPIRED_TOKEN",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
)
UNREACHABLE_MARKERS = (
    "NETWORK_CONNECTION",
    "Could not connect",
    "Couldn't connect",
    "Connection refused",
    "Could not resolve host",
    "Couldn't resolve host",
    "Timeout was reached",
)
DENIED_FIX = (
    "the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the profile AWS_PROFILE names) are not "
    "accepted for that bucket; fix them"
)
UNREACHABLE_FIX = "check the endpoint (AWS_ENDPOINT_URL for an S3-compatible server) and the network"


class StoreFault(Enum):
    """Why a remote store failed, as far as its error says; each calls for another fix."""

    DENIED = "denied"  # it answered and refused the credentials
    UNREACHABLE = "unreachable"  # it did not answer: the endpoint, the network, a server that went away


def store_fault(error: BaseException) -> StoreFault | None:
    """The fault behind ``error`` or any error it was raised from, None when its text names neither.

    One classifier for every message about a store (the run's preflight, stage outputs, the run
    record, `relay data`), because the same ACCESS_DENIED was called "does not answer" by two of them.
    """
    for exc in exception_chain(error):
        text = str(exc)
        if any(marker in text for marker in DENIED_MARKERS):
            return StoreFault.DENIED
        if isinstance(exc, ConnectionError) or any(marker in text for marker in UNREACHABLE_MARKERS):
            return StoreFault.UNREACHABLE
    return None


def store_failure(uri: str, error: BaseException) -> str | None:
    """What a store fault means and what to fix, naming the store and the error's first line; None when
    ``error`` is neither fault (a full disk, a read-only folder: the caller's own words fit those)."""
    fault = store_fault(error)
    detail = innermost_first_line(error)
    if fault is StoreFault.DENIED:
        return f"access to the store {uri} was denied ({detail}): {DENIED_FIX}"
    if fault is StoreFault.UNREACHABLE:
        return f"the store {uri} does not answer from this machine ({detail}); {UNREACHABLE_FIX}"
    return None


def innermost_first_line(error: BaseException) -> str:
    """The first line of the innermost error behind ``error``: the storage's own words, once."""
    root = list(exception_chain(error))[-1]
    lines = str(root).strip().splitlines()
    return lines[0] if lines else type(root).__name__
