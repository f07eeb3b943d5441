"""The token a Ray client sends (see the package docstring): found in Ray's order, and what is wrong with it.

Its own module because both the Jobs client (``connection``) and the GCS probe (``gcs``) send it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def default_token_path() -> Path:
    """Where ``ray get-auth-token --generate`` and ``ray.init()`` keep the token."""
    return Path.home() / ".ray" / "auth_token"


def _read_token_file(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def find_auth_token() -> str | None:
    """The token a Ray client would use, in Ray's order; None if disabled or absent.

    Side effect, on purpose: when neither RAY_AUTH_MODE nor RAY_AUTH_TOKEN is set and
    ``~/.ray/auth_token`` exists, RAY_AUTH_MODE=token is set so that Ray code started later from
    this process (the ``ray`` CLI, a fresh interpreter) authenticates the same way. A token from
    the environment switches the mode only where a cluster is joined (``token_mode_for_joining``).
    """
    mode = os.environ.get(AUTH_MODE_ENV, "").strip().lower()
    if mode == "disabled":
        return None
    token = _token_in_rays_order()
    if token and not mode and not _token_from_environment():
        os.environ[AUTH_MODE_ENV] = "token"
        logger.debug("using %s; set %s=token", default_token_path(), AUTH_MODE_ENV)
    return token


def token_mode_for_joining() -> None:
    """Before ``ray.init(address=...)``: RAY_AUTH_MODE=token when a token is found and no mode is set.

    Why: Ray's client sends a token to a given address only in token mode (it turns the mode on by
    itself only for a cluster it finds on its own), so with RAY_AUTH_TOKEN alone, as Relay's own
    advice says to set it, the GCS probe passed and ``ray.init`` then failed after 20 s of
    "InvalidAuthToken" lines. Only the joining driver switches: a process that merely reads a
    token (the Jobs client) keeps its mode, so a later local start in it is not affected.
    """
    if not os.environ.get(AUTH_MODE_ENV, "").strip() and find_auth_token():
        os.environ[AUTH_MODE_ENV] = "token"


def _token_from_environment() -> bool:
    return bool(os.environ.get(AUTH_TOKEN_ENV, "").strip() or os.environ.get(AUTH_TOKEN_PATH_ENV))


def _token_in_rays_order() -> str | None:
    """RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH names, else ``~/.ray/auth_token``."""
    token = os.environ.get(AUTH_TOKEN_ENV, "").strip()
    if token:
        return token
    token_path = os.environ.get(AUTH_TOKEN_PATH_ENV)
    if token_path:
        return _read_token_file(Path(token_path).expanduser())
    return _read_token_file(default_token_path())


TOKEN_PATH_FIX = (
    "point RAY_AUTH_TOKEN_PATH at a copy of the head's ~/.ray/auth_token, or set RAY_AUTH_TOKEN=<token> "
    "(on the head node: `ray get-auth-token`)"
)


def token_path_problem() -> str | None:
    """What is wrong with the file RAY_AUTH_TOKEN_PATH names (not there, unreadable, empty), when it is the token's
    source (no RAY_AUTH_TOKEN); None otherwise.

    Why: a missing file read as "none was found", which sent the user looking for a token they had set.
    """
    name = os.environ.get(AUTH_TOKEN_PATH_ENV)
    if not name or os.environ.get(AUTH_TOKEN_ENV, "").strip():
        return None
    path = Path(name).expanduser()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return f"{AUTH_TOKEN_PATH_ENV} names {name}, which does not exist"
    except OSError as exc:
        return f"{AUTH_TOKEN_PATH_ENV} names {name}, which cannot be read ({exc.strerror or type(exc).__name__})"
    return None if text.strip() else f"{AUTH_TOKEN_PATH_ENV} names {name}, which is empty"


def auth_headers() -> dict[str, str]:
    """The Authorization header for the Jobs server, or none when there is no token."""
    token = find_auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}
