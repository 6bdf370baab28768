"""Served models count against their team's quota, as workloads training never preempts.

Each model in the serving document holds its minimum replicas times the resources of a replica
(:func:`flywheel.admission.demand_of_serving`): the part training can never take back. Replicas
that autoscaling adds above the minimum are not counted; Serve starts them in whatever the
cluster has free. A model belongs to the team whose run produced its latest version (looked up
in MLflow, remembered for a minute); a model of no team in the teams file counts for none. The
document is read at most every few seconds: the queue driver asks every second, and on an S3
root each read lists objects.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from flywheel.admission import Workload, demand_of_serving
from flywheel.errors import FlywheelError
from flywheel.serving.document import ServingDocument
from flywheel.specs.teams import TeamsSpec

_log = logging.getLogger("flywheel.queue")
#: Prefix of a served model's workload id (experiment ids never contain a colon).
SERVING_PREFIX = "serving:"
_OWNER_TTL_S = 60.0
_DOCUMENT_TTL_S = 5.0


class ServingUsage:
    """The served models of the document as admitted, non-preemptible workloads."""

    def __init__(
        self, document: Callable[[], ServingDocument], owner: Callable[[str], str | None]
    ) -> None:
        self._document = document
        self._owner = owner
        self._owners: dict[str, tuple[str | None, float]] = {}
        self._read: tuple[ServingDocument, float] | None = None

    def workloads(self, teams: TeamsSpec) -> list[Workload]:
        """One workload per served model of a known team; none when the document is unreadable
        (the queue goes on without them, and says so in the log)."""
        try:
            models = self._current().models
        except FlywheelError as e:
            _log.warning("served models left out of admission: %s", e)
            return []
        known = {t.name: t for t in teams.teams}
        found = []
        for model, served in sorted(models.items()):
            team = self._team_of(model)
            if team is None or team not in known:
                continue
            replicas = served.serve.autoscaling.min_replicas
            found.append(
                Workload(
                    id=f"{SERVING_PREFIX}{model}", team=team,
                    priority=teams.priority_value(known[team].priority), submitted_at_s=0.0,
                    demand=demand_of_serving(served.serve, replicas), state="admitted",
                    preemptible=False,
                )
            )  # fmt: skip
        return found

    def _current(self) -> ServingDocument:
        if self._read is None or time.monotonic() - self._read[1] >= _DOCUMENT_TTL_S:
            self._read = (self._document(), time.monotonic())
        return self._read[0]

    def _team_of(self, model: str) -> str | None:
        team, looked_s = self._owners.get(model, (None, -math.inf))
        if time.monotonic() - looked_s >= _OWNER_TTL_S:
            try:
                team = self._owner(model)
            except Exception as e:  # MLflow down: keep the last answer, ask again next time
                _log.warning("owner of served model %s unknown: %s", model, e)
                return team
            self._owners[model] = (team, time.monotonic())
        return team


def is_serving(workload_id: str) -> bool:
    return workload_id.startswith(SERVING_PREFIX)
