"""A plug-in installed for a test: a real distribution on sys.path, found through its `relay.pipelines` entry points.

Relay finds plug-ins with `importlib.metadata`, which reads every `*.dist-info` folder on sys.path; a folder
holding the package and its dist-info (METADATA, entry_points.txt), put first on sys.path, is what `pip install`
leaves behind as far as that lookup can tell. No mock: the tests go through the same lookup as `relay` does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.registry import load_pipelines


def install_plugin(site: Path, package: str, source: str, entry_points: dict[str, str]) -> None:
    """Install ``package`` (its ``__init__.py`` is ``source``) as distribution 0.1 in the folder ``site``.

    The distribution is named as the package with dashes (relay_toy: relay-toy), the name Relay's messages
    give the plug-in. ``entry_points`` maps each pipeline name to the attribute of ``package`` holding its
    spec. The cached pipelines are dropped, so the next lookup reads the entry points again.
    """
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(source)
    info = site / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: 0.1\n")
    declared = "".join(f"{name} = {package}:{attribute}\n" for name, attribute in entry_points.items())
    (info / "entry_points.txt").write_text(f"[relay.pipelines]\n{declared}")
    sys.path.insert(0, str(site))
    load_pipelines.cache_clear()


def uninstall_plugin(site: Path, package: str) -> None:
    """The plug-in gone as for a shell without it: ``site`` off sys.path, ``package`` unloaded, the cache dropped.

    Safe to call twice: a test may uninstall the plug-in itself before the fixture's own cleanup runs.
    """
    if str(site) in sys.path:
        sys.path.remove(str(site))
    sys.modules.pop(package, None)
    load_pipelines.cache_clear()


@contextmanager
def installed_plugin(site: Path, package: str, source: str, entry_points: dict[str, str]) -> Iterator[Path]:
    """``package`` installed in ``site`` (see `install_plugin`) while the block runs, uninstalled after it."""
    install_plugin(site, package, source, entry_points)
    try:
        yield site
    finally:
        uninstall_plugin(site, package)
