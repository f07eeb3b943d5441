"""The code version of each stage module of a pipeline: which package folders are digested, and saying so.

A stage's fingerprint holds its code version (``orchestrator.engine.fingerprint.code_versions``); this
finds the folder of each stage body's package, Relay's or a plug-in's, so an edit reruns only the stages
whose code it touches.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from orchestrator.dag import Pipeline
from orchestrator.engine.fingerprint import code_versions
from orchestrator.errors import RelayError

RELAY_STAGE_PACKAGE = "pipelines"  # Relay's pipelines, whose stage helpers a plug-in's stages may import


def pipeline_code_versions(pipeline: Pipeline) -> dict[str, str]:
    """Stage module -> its code version: the module and what it imports from its own package, transitively.

    The package of each stage body is found from the body's module name (its top-level package,
    imported without the body itself, so the driver loads no torch), so a user's package is
    digested exactly like Relay's own, and an edit reruns only the stages whose code it touches.
    A plug-in's stages also digest what they import of Relay's ``pipelines`` (``shared_folders``).
    Silent: where the versions come from is said by ``log_code_versions`` once the command's input
    is accepted (`relay tune` needs the versions to check its sweep, and bad input prints only its message).
    """
    versions: dict[str, str] = {}
    for top, modules in stage_packages(pipeline).items():
        folder = package_folder(top)
        if folder is None:
            continue
        if next(folder.rglob("*.py"), None) is None:  # an empty digest would silently change every fingerprint
            raise RelayError(f"no Python files under {folder}, where {', '.join(sorted(modules))} was imported from")
        versions.update(code_versions(modules, folder, *shared_folders(top)))
    return versions


def shared_folders(top: str) -> list[Path]:
    """The folder of Relay's ``pipelines`` for a plug-in package ``top``; none for Relay's own stages.

    Why: a plug-in's stage may call Relay's stage helpers (``pipelines.stages.common.picks_of``);
    counted as environment, an upgrade that changed them reran every Relay stage and left the
    plug-in's cached. Relay's own stages already digest ``pipelines``, so theirs stay as they were.
    """
    if top == RELAY_STAGE_PACKAGE:
        return []
    folder = package_folder(RELAY_STAGE_PACKAGE)
    return [] if folder is None else [folder]


def log_code_versions(pipeline: Pipeline) -> None:
    """Say where ``pipeline_code_versions`` found each stage package's code; warn of one without a folder.

    Why a line: on a cluster the package may come from the job's upload or an installed copy, and
    the folders named here are the ones whose edits rerun cached stages (for a plug-in, Relay's
    ``pipelines`` too, where its stages import from it).
    """
    log = logging.getLogger("relay")
    for top, modules in stage_packages(pipeline).items():
        folder = package_folder(top)
        if folder is None:
            log.warning(
                "no code version for %s: package %r has no folder of its own; an edit of it will not rerun "
                "cached stages",
                ", ".join(sorted(modules)),
                top,
            )
        else:
            shared = "".join(f" and what they import under {path}" for path in shared_folders(top))
            log.info("code versions of %d stage modules under %s%s", len(modules), folder, shared)


def stage_packages(pipeline: Pipeline) -> dict[str, set[str]]:
    """Top-level package -> the modules of the pipeline's stage bodies in it, by package name."""
    by_package: dict[str, set[str]] = {}
    for stage in pipeline.stages:
        module = getattr(stage.fn, "__module__", "")
        by_package.setdefault(module.split(".")[0], set()).add(module)
    return dict(sorted(by_package.items()))


def package_folder(top: str) -> Path | None:
    """The folder of the regular package ``top``: its ``__file__``'s, else the one a finder of ``sys.meta_path`` has.

    Why the finders: a folder of that name without ``__init__.py`` earlier on the path (a
    project's own ``pipelines/configs/``, which a Ray job puts first on the path as its working
    folder) makes ``import pipelines`` a namespace package without a file, while its modules
    still load from the installed package (an editable install's finder). Its stages then got
    no code version, silently, and a cluster run's cache ignored edits of their code.
    """
    package = importlib.import_module(top)
    if getattr(package, "__file__", None):
        return Path(package.__file__).parent
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(top, None) if find_spec is not None else None
        if spec is not None and spec.has_location and spec.origin:
            return Path(spec.origin).parent
    return None
