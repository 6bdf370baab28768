"""When a running experiment last saved work it can resume from, for checkpoint-aware preemption.

A preempted experiment resumes from its Ray Train checkpoints and its search journal (finished
trials are not rerun), both under the storage root. The newest file there is its last save: work
since then is what a preemption throws away, and the admission function prefers victims that
lose the least of it (:func:`flywheel.admission.loss_order`). Looking costs a listing of the
experiment's folders, so each experiment is looked at most once every ``interval_s``.
"""

from __future__ import annotations

import logging
import math
import time

from flywheel import storage
from flywheel.errors import FlywheelError
from flywheel.plans import JobPlan
from flywheel.server.models import Experiment
from flywheel.storage_layout import StorageLayout

_log = logging.getLogger("flywheel.queue")
#: Seconds between two looks at one experiment's saved state.
SAVE_PROBE_INTERVAL_S = 30.0


class SaveProbe:
    """The time of an experiment's last save, from the files under its storage folders."""

    def __init__(self, interval_s: float = SAVE_PROBE_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._looked: dict[str, float] = {}

    def last_save_s(self, experiment: Experiment) -> float | None:
        """The newest file's time, or None (not looked this time, nothing saved, or unreadable)."""
        now = time.monotonic()
        if now - self._looked.get(experiment.id, -math.inf) < self._interval_s:
            return None
        self._looked[experiment.id] = now
        plan = JobPlan.model_validate_json(experiment.plan_json)
        layout = StorageLayout(plan.storage_root)
        team, name = plan.spec.team, plan.spec.name
        try:
            times = [
                storage.latest_modified_s(url)
                for url in (layout.checkpoints(team, name), layout.search(team, name))
            ]
        except FlywheelError as e:  # storage trouble: keep what is known, look again later
            _log.warning("cannot look at the saves of %s: %s", experiment.id, e)
            return None
        return max((t for t in times if t is not None), default=None)
