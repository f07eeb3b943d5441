"""Where a pipeline run's code came from: the git commit and the versions of the packages that matter.

Logged as tags on the pipeline's MLflow run (tags, not params: a resumed run
may run on upgraded packages, and params cannot change once logged).
"""

from __future__ import annotations

import logging
import subprocess
from importlib import metadata
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "ray", "mlflow", "pyarrow", "relay")
UNKNOWN = "unknown"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # orchestrator/tracking/provenance.py -> the checkout


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """HEAD of the git checkout holding Relay, or "unknown" (an installed wheel, no git binary)."""
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("no git commit for %s: %s", root, exc)
        return UNKNOWN
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else UNKNOWN


def git_dirty(root: Path = PROJECT_ROOT) -> str:
    """ "true" when tracked files differ from HEAD (the commit alone does not reproduce the run)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return UNKNOWN if done.returncode != 0 else str(bool(done.stdout.strip())).lower()


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each package, "unknown" where it is not installed."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = UNKNOWN
    return versions


def provenance_tags() -> dict[str, str]:
    """MLflow tags of a pipeline run: relay.git_commit (also as MLflow's own source tag) and relay.version.*."""
    commit = git_commit()
    tags = {"relay.git_commit": commit, "relay.git_dirty": git_dirty() if commit != UNKNOWN else UNKNOWN}
    if commit != UNKNOWN:
        tags["mlflow.source.git.commit"] = commit
    tags.update({f"relay.version.{name}": version for name, version in package_versions().items()})
    return tags
