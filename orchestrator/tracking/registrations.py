"""The model versions one pipeline run registers, and the aliases it keeps pointing at them.

Why a module of its own: registering is the one part of tracking that reaches outside the run's
MLflow runs, into the registered model every run of the pipeline shares. Its record is the
pipeline run's ``relay.registered_models`` tag (``models:/NAME/VERSION (ALIAS)`` entries, every
attempt's), which a resume reads back, `relay delete` lists, and the run's end uses to point the
aliases at this run's own versions and to drop the ones it has no model for (past its last
generation, or of a branch it does not have).

Versions are registered as the run goes (nothing is lost to a stop or a crash), but aliases move only
when the run finishes: `--stop-after g00/train`, a Ctrl-C or a failed run moved ``gen-00`` and
``newest`` onto an unevaluated model of a run that never finished, while ``gen-01`` stayed on another
run's, so ``models:/NAME@newest`` named a stopped run's first generation and the aliases mixed runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from orchestrator.tracking import lineage
from orchestrator.tracking.common import TAG_GENERATION, TAG_PIPELINE_RUN, TAG_STAGE
from orchestrator.tracking.lineage import alias_generation

logger = logging.getLogger(__name__)

TAG_REGISTERED = "relay.registered_models"  # on the parent: every model version the run registered
ENTRY_PREFIX = "models:/"


def recorded_entries(tag_value: str) -> list[str]:
    """The ``models:/NAME/VERSION (ALIAS)`` entries of a ``relay.registered_models`` tag's value."""
    return [entry for entry in tag_value.split(", ") if entry]


def parsed_entries(entries: Sequence[str]) -> list[tuple[str, str, str]]:
    """(name, version, first alias) of each ``models:/NAME/VERSION (ALIAS)`` entry; others are skipped."""
    parsed = []
    for entry in entries:
        if entry.startswith(ENTRY_PREFIX) and entry.endswith(")"):
            model, alias = entry[len(ENTRY_PREFIX) : -1].rsplit(" (", 1)
            name, version = model.rsplit("/", 1)
            parsed.append((name, version, alias))
    return parsed


def is_own_generation(alias: str) -> bool:
    """``gen-NN`` itself, the alias of a generation's own model, not a side branch's ``ROLE-gen-NN``."""
    generation = alias_generation(alias)
    return generation is not None and alias == lineage.model_alias(generation)


class RunRegistrations:
    """What one pipeline run registered under its pipeline's name, kept on its parent MLflow run.

    ``entries`` starts from the parent's tag on resume, so the end of the run sees every attempt's
    versions, not only this attempt's.
    """

    def __init__(self, client: Any, pipeline_name: str, run_id: str, parent: str, entries: Sequence[str] = ()) -> None:
        self._client = client
        self.pipeline_name = pipeline_name
        self.run_id = run_id
        self.parent = parent
        self.entries = list(entries)

    def register(self, model: Any, run: str, artifact_name: str, stage_name: str, generation: int, alias: str) -> None:
        """Register ``model`` as a version, recording ``alias`` as the one it takes when the run finishes.

        No alias moves here (see the module's docstring): ``point_aliases`` sets them at the run's end.
        A model already registered under this pipeline's name (the same bytes, from an earlier run or
        attempt) keeps its version.
        """
        known = [v for v in lineage.registered_versions(model) if v.get("name") == self.pipeline_name]
        if known:
            version = str(max(int(v["version"]) for v in known))
        else:
            tags = {TAG_PIPELINE_RUN: self.run_id, TAG_GENERATION: str(generation), TAG_STAGE: stage_name}
            version = lineage.register(self._client, self.pipeline_name, model, run, tags)
        entry = f"{ENTRY_PREFIX}{self.pipeline_name}/{version} ({alias})"
        # A redone stage of the same bytes is recorded once, last: the latest entry of an alias wins.
        self.entries = [*(known_entry for known_entry in self.entries if known_entry != entry), entry]
        self._client.set_tag(self.parent, TAG_REGISTERED, ", ".join(self.entries))
        logger.info(
            "%s %s as model %s version %s; its alias %s moves there when the run finishes",
            "reused" if known else "registered",
            artifact_name,
            self.pipeline_name,
            version,
            alias,
        )

    def drop_stale_aliases(self) -> None:
        """Remove the registered model's aliases an earlier run set and this finished run has no model for; one
        line per reason says which.

        Those are the generation aliases above this run's last generation (the highest one among the
        models this run registered, in this attempt or an earlier one, so a run resumed after
        ``--stop-after`` drops nothing until it has registered its last generation), and the side
        branches' aliases (``baseline-gen-01``) this run registered no model for: a config without
        that branch left them on the older run's version.
        """
        registered = [alias_generation(alias) for _, _, alias in parsed_entries(self.entries)]
        last = max((g for g in registered if g is not None), default=None)
        if last is None:
            return
        beyond = lineage.drop_aliases_beyond(self._client, self.pipeline_name, last)
        self._say_removed(beyond, f"this run's last generation is {lineage.model_alias(last)}")
        branches = lineage.drop_branch_aliases(self._client, self.pipeline_name, self.own_aliases())
        self._say_removed(branches, "this run has no model of their branch")

    def _say_removed(self, aliases: Sequence[str], reason: str) -> None:
        if aliases:
            logger.info(
                "removed alias(es) %s of model %s: an earlier run set them, and %s",
                ", ".join(aliases),
                self.pipeline_name,
                reason,
            )

    def point_aliases(self) -> None:
        """Point every alias this finished run registered (and ``newest``) at its own version; one line names them.

        The entries cover every attempt (a run resumed after ``--stop-after`` included) and the cache
        hits that reused another run's version (same bytes), so after `relay resume` no alias of a
        generation an earlier attempt registered stays on another run's version.
        """
        wanted = self.own_aliases()
        if not wanted:
            return
        lineage.repoint_aliases(self._client, self.pipeline_name, wanted)
        logger.info(
            "aliases of model %s now name this run's versions: %s",
            self.pipeline_name,
            ", ".join(f"{alias} -> version {version}" for alias, version in sorted(wanted.items())),
        )

    def own_aliases(self) -> dict[str, str]:
        """Alias -> version of this run's registered models (the latest entry of an alias wins), with ``newest``
        on its last generation's model: ``{"gen-00": "1", "gen-01": "4", "newest": "4"}``."""
        own = {alias: version for name, version, alias in parsed_entries(self.entries) if name == self.pipeline_name}
        generations = {alias_generation(alias): version for alias, version in own.items() if is_own_generation(alias)}
        if generations:
            own[lineage.NEWEST_ALIAS] = generations[max(generations)]
        return own
