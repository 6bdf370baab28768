"""The control plane's periodic monitor: every served model checked for drift on a timer.

On Kubernetes the same driver advances progressive rollouts (``flywheel.server.serve_finished``):
each step judges every progressive rollout's current step once, as ``POST /models/<m>/step``
does.

Each step runs the same check as ``flywheel monitor`` (and ``POST /models/<m>/monitor``) on
every served model: the alert state is updated, a raised or cleared alert is logged and sent to
the webhook, and where the serve section sets ``monitor.retrain_on_alert``, a raised alert
queues one retraining per incident (:func:`flywheel.retraining.retrain_due`). A model whose
check fails is logged and skipped; the others are still checked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

_log = logging.getLogger("flywheel.monitor")


class MonitorDriver:
    """Calls ``check(model)`` for each of ``models()`` every ``interval_s`` seconds."""

    def __init__(
        self, models: Callable[[], list[str]], check: Callable[[str], object], interval_s: float,
        name: str = "flywheel-monitor",
    ) -> None:  # fmt: skip
        self._name = name
        self._models = models
        self._check = check
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run steps in a daemon thread until :meth:`close` (never with an interval of 0)."""
        if self._interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def step(self) -> dict[str, str]:
        """Check every served model once; returns the models whose check failed, with why."""
        failed: dict[str, str] = {}
        for model in sorted(set(self._models())):
            try:
                self._check(model)
            except Exception as e:  # one model's failure must not stop the others' checks
                _log.warning("%s: %s failed: %s", self._name, model, e)
                failed[model] = str(e) or type(e).__name__
        return failed

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.step()
            except Exception:  # listing the served models failed: try again next time
                _log.exception("%s step failed", self._name)
