"""What identifies a stage's outputs: its fingerprint, its seed, and the version of the code behind it.

A stage whose fingerprint has a complete manifest in the store is a cache hit, so everything
that can change a stage's outputs goes into the fingerprint (name, function, params, declared
outputs, input digests, code version, the run's seed unless the stage declares that the seed does
not determine its outputs (``Stage.seeded``: a data split), and of its resources what changes float results:
torch's thread count, CPU or GPU, the data-parallel width) and nothing else (not its generation
number, custom resources, nor how many actors map its shards), so a labeling stage moved to more
actors is still cached. Threads change results because a reduction split over more threads adds
its floats in another order; after a few hundred SGD steps the models differ.

The code version is the stage's own: a digest of its body's module and of every module of the
same package that it imports, transitively (read from the source, never imported, so the driver
stays free of torch). Editing Knowledge Evolution's loop reruns KE's stages and leaves CReST's
cached; a digest of the whole package would rerun everything after any edit. A plug-in's stage
(a user's package, found by entry point) is digested with Relay's ``pipelines`` package as well:
its body may import Relay's stage helpers (``pipelines.stages.common.picks_of``), and an upgrade
that changes them must rerun it as it reruns Relay's own stages.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from orchestrator.dag import Parallelism, Stage

CODE_VERSION_CHARS = 16


def _canonical(value: Any) -> Any:
    """JSON fallback for params: typed settings as their JSON dump, sets sorted, paths and enums as text.

    Stage params hold the config's typed sections (pydantic models, validated once at the edge);
    their ``model_dump(mode="json")`` is what identifies them, or, for a section that says what
    identifies it (``fingerprint_view``: the data section leaves out where a dataset pinned by its
    digest lives), that.
    """
    if hasattr(value, "fingerprint_view"):
        return value.fingerprint_view()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (Path, Enum)):
        return str(value.value if isinstance(value, Enum) else value)
    raise TypeError(f"{type(value).__name__} is not JSON-able; stage params must be plain config values")


def fingerprint(
    stage: Stage,
    input_digests: Mapping[str, str],
    code_version: str,
    seed: int = 0,
    ran_as: Mapping[str, Any] | None = None,
) -> str:
    """sha256 of what determines a stage's outputs: name, function, params, code, inputs, seed, numerics.

    ``ran_as``: the numerics the executor will really run the stage with (``Executor.numerics``);
    by default those its resources ask for (``numerics``). An unseeded stage's payload has no
    seed key at all, rather than a fixed value under it, so that a seeded stage's payload, and
    with it every cache already in a store, stays as it was.
    """
    payload: dict[str, Any] = {
        "stage": stage.name,
        "fn": f"{getattr(stage.fn, '__module__', '?')}.{getattr(stage.fn, '__qualname__', repr(stage.fn))}",
        "params": stage.params,
        "outputs": list(stage.outputs),
        "inputs": dict(sorted(input_digests.items())),
        "code_version": code_version,
        "numerics": dict(numerics(stage) if ran_as is None else ran_as),
    }
    if stage.seeded:
        payload["seed"] = seed
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_canonical)
    except TypeError as exc:
        raise TypeError(f"stage {stage.name!r}: cannot fingerprint its params: {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()


def numerics(stage: Stage) -> dict[str, Any]:
    """What of a stage's resources changes its float results: threads per worker (orchestrator/engine/body.py
    sets torch's to ``num_cpus``), the device, and for data-parallel stages the number of ranks."""
    resources = stage.resources
    ranks = resources.workers if stage.parallelism is Parallelism.DATA else 1
    return {"threads": max(1, int(resources.num_cpus)), "cuda": resources.num_gpus > 0, "ranks": ranks}


UNSEEDED_RUN_SEED = 0  # the run seed an unseeded stage's body derives its own from, whatever the run's


def task_seed(stage: Stage, seed: int) -> int:
    """The run seed ``stage``'s task carries: the run's, or for an unseeded stage always UNSEEDED_RUN_SEED.

    Why: an unseeded stage's outputs are cached across seeds, so whatever it might draw from
    ``ctx.seed`` must be the same in every run, or a cache hit would differ from a recomputation.
    """
    return seed if stage.seeded else UNSEEDED_RUN_SEED


def stage_seed(seed: int, stage_name: str) -> int:
    """A per-stage seed: stages draw independent streams, and a rerun draws the same one."""
    return int(hashlib.sha256(f"{seed}:{stage_name}".encode()).hexdigest()[:8], 16)


def code_versions(modules: Iterable[str], package_dir: Path, *shared_dirs: Path) -> dict[str, str]:
    """Module -> the code version of a stage whose body lives in it (``source_closure``'s digest).

    ``package_dir`` is the folder of the package the modules belong to (the caller finds it, so
    the engine digests a user's package exactly like Relay's own). ``shared_dirs`` are folders of
    other packages whose imported modules count too: for a plug-in's stages, Relay's ``pipelines``,
    whose helpers they may call. Only modules a stage imports enter its digest, so a stage that
    imports none of a shared package keeps the version it had without it.
    """
    folders = [Path(package_dir), *map(Path, shared_dirs)]
    parsed: dict[Path, set[str]] = {}
    versions = {}
    for module in sorted(set(modules)):
        digest = hashlib.sha256()
        for name, path in sorted(source_closure(module, folders, parsed).items()):
            digest.update(f"{name}\0".encode())
            digest.update(path.read_bytes())
        versions[module] = digest.hexdigest()[:CODE_VERSION_CHARS]
    return versions


def source_closure(
    module: str, package_dirs: Path | Sequence[Path], parsed: dict[Path, set[str]] | None = None
) -> dict[str, Path]:
    """``module`` and every module of the given packages it imports, transitively: dotted name -> file.

    ``package_dirs`` is one package folder or several (a plug-in's own and Relay's ``pipelines``).
    Every import statement counts, lazy ones inside functions included, and so do the packages'
    ``__init__`` files on the way (importing a module runs them). Imports from other packages
    (torch, the engine) are the environment, which provenance records, not this digest.
    ``parsed`` caches each file's imports across calls with the same folders.
    """
    folders = by_top_name([package_dirs] if isinstance(package_dirs, Path) else package_dirs)
    parsed = {} if parsed is None else parsed
    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = None if name in found else module_file_in(name, folders)
        if path is None:
            continue
        found[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        if path not in parsed:
            every = imports_of(path, name, lambda candidate: module_file_in(candidate, folders) is not None)
            parsed[path] = {n for n in every if n.split(".")[0] in folders}
        todo += parsed[path]
    return found


def by_top_name(package_dirs: Iterable[Path]) -> dict[str, Path]:
    """Package name -> its folder; the first folder of a name wins (a plug-in's own over a shared one)."""
    folders: dict[str, Path] = {}
    for folder in map(Path, package_dirs):
        folders.setdefault(folder.name, folder)
    return folders


def module_file_in(name: str, folders: Mapping[str, Path]) -> Path | None:
    """The source file of dotted ``name`` in whichever of ``folders`` (by package name) holds its package."""
    folder = folders.get(name.split(".")[0])
    return None if folder is None else module_file(name, folder)


def module_file(name: str, package_dir: Path) -> Path | None:
    """The source file of dotted ``name`` inside the package at ``package_dir`` (None outside it)."""
    parts = name.split(".")
    if parts[0] != package_dir.name:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.parent / f"{base.name}.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path, name: str, is_module: Callable[[str], bool]) -> set[str]:
    """Every absolute module the file ``path`` (module ``name``) imports, at any depth, relative ones resolved.

    ``from a import b`` counts as ``a.b`` when ``is_module("a.b")``, else as ``a`` (b is a name in a).
    tests/unit/test_layers.py checks the import layers with the same reading.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if is_module(candidate) else base)
    return found
