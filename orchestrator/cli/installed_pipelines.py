"""The pipelines the installed entry points declare, and the wiring a plug-in's spec is given.

``installed_pipelines`` loads the ``relay.pipelines`` entry points (``orchestrator.registry.load_pipelines``)
and gives a plug-in's spec that leaves ``data`` unset the data handling of the pipelines whose data section
its own derives from (``wiring_of``). Apart from reading a pipeline file: every command loads the pipelines,
and only the ones that check a file say what a spec was given (``say_wiring``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from orchestrator.registry import LoadedPipelines, PipelineSpec, load_pipelines

_WIRED: dict[str, tuple[LoadedPipelines, LoadedPipelines]] = {}  # "last": (what load_pipelines gave, it wired)
# Pipeline name -> (its wired spec, the info line saying so), for the last load: said when a file picks it.
_WIRING_LINES: dict[str, tuple[PipelineSpec, str]] = {}


def installed_pipelines() -> LoadedPipelines:
    """Every pipeline the installed entry points declare, a plug-in's given the wiring of the data section it reads.

    ``load_pipelines``, with each spec through ``wiring_of``; worked out once per load (a test that
    clears ``load_pipelines``'s cache gets its new plug-ins wired too). The info line saying what a spec
    was given is kept for ``say_wiring``, not logged here: every command loads the pipelines, and the
    line was printed by `relay runs`, `relay generations` and `relay diff` too.
    """
    loaded = load_pipelines()
    last = _WIRED.get("last")
    if last is None or last[0] is not loaded:
        _WIRING_LINES.clear()
        wired = {}
        for name, spec in loaded.items():
            wired[name], line = wiring_of(spec, loaded)
            if line:
                _WIRING_LINES[name] = (wired[name], line)
        last = _WIRED["last"] = (loaded, LoadedPipelines(wired, loaded.rejected, loaded.unloadable))
    return last[1]


def say_wiring(spec: PipelineSpec) -> None:
    """Log, once per load, what ``spec`` was given of another pipeline's wiring, where a file of it is checked.

    Only for the spec ``installed_pipelines`` wired (a caller's own mapping is not wired): `relay validate`,
    `run`, `tune` and `submit` say it, as the config they check is the one it matters to.
    """
    kept = _WIRING_LINES.get(spec.name)
    if kept is not None and kept[0] is spec:
        del _WIRING_LINES[spec.name]
        logging.getLogger("relay").info("%s", kept[1])


def wiring_of(spec: PipelineSpec, pipelines: Mapping[str, PipelineSpec]) -> tuple[PipelineSpec, str | None]:
    """``spec``, given the ``data``, ``pyfunc_loader`` and ``input_shape`` of the pipelines whose data section its own
    derives from, and the info line saying so (None: left as it is).

    Only for a spec that leaves ``data`` unset and whose config model's ``data`` field is a subclass of
    the data section of pipelines that carry a ``DataSpec`` (Relay's: ``DataSection``), all with the same
    wiring; a ``pyfunc_loader`` or ``input_shape`` the spec sets is kept. Why: Relay's own specs are given
    these where they are registered, and a plug-in's spec written as the checklist says had none, so a
    dataset imported again at the same ``data.uri`` met the old data's cached stages (nothing pinned its
    content) and its registered models had no python_function flavour. Matched by the data section, not
    by name: the engine names no pipeline, and a spec reading those datasets is read by that code.
    """
    section = data_section(spec.config_model)
    if spec.data is not None or section is None:
        return spec, None
    donors: dict[tuple[int, str | None, int], PipelineSpec] = {}  # one per distinct wiring, the first by name
    for name in sorted(pipelines):
        if reads_a_base_of(section, pipelines[name]):
            other = pipelines[name]
            donors.setdefault((id(other.data), other.pyfunc_loader, id(other.input_shape)), other)
    if len(donors) != 1:  # none, or pipelines with other wiring on that section: nothing to take for granted
        return spec, None
    (donor,) = donors.values()
    wired = dataclasses.replace(
        spec,
        data=donor.data,
        pyfunc_loader=spec.pyfunc_loader or donor.pyfunc_loader,
        input_shape=spec.input_shape or donor.input_shape,
    )
    line = (
        f"pipeline {spec.name!r} sets no PipelineSpec.data and reads the data section "
        f"{section.__module__}.{section.__qualname__}, as pipeline {donor.name!r} does: it gets that pipeline's "
        f"data handling (datasets pinned by content), model loader {wired.pyfunc_loader} and input shape; set "
        "them on its spec to choose others"
    )
    return wired, line


def reads_a_base_of(section: type, other: PipelineSpec) -> bool:
    """Whether ``other`` carries a ``DataSpec`` and its config's data section is ``section`` or a base of it."""
    theirs = data_section(other.config_model)
    return other.data is not None and theirs is not None and issubclass(section, theirs)


def data_section(config_model: Any) -> type | None:
    """The class of a config model's ``data`` field (``DataSection`` for Relay's pipelines), or None."""
    field = getattr(config_model, "model_fields", {}).get("data")
    annotation = getattr(field, "annotation", None)
    return annotation if isinstance(annotation, type) else None
