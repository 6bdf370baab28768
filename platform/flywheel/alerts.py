"""The edge of drift alerts: their stored state, the log line and the webhook.

The decision is :func:`flywheel.monitoring.next_alert` (pure). This module records it under the
storage root (``<root>/monitoring/<model>/alert.json``), logs one line on the
``flywheel.alerts`` logger when an alert is raised or cleared, and POSTs the same event as JSON
to the serve section's ``monitor.webhook_url`` when one is set. The URL may hold a token: it is
never logged, and a webhook that fails is logged (without its URL) and does not fail the check.
"""

from __future__ import annotations

import json
import logging

import httpx
from pydantic import ValidationError

from flywheel import storage
from flywheel.wire import AlertState, MonitorReport

_log = logging.getLogger("flywheel.alerts")
_WEBHOOK_TIMEOUT_S = 5.0


def alert_url(storage_root: str, model: str) -> str:
    return storage.join(storage_root, "monitoring", model, "alert.json")


def read_alert(storage_root: str, model: str) -> AlertState:
    """The stored alert of ``model``; a fresh, inactive one when none is stored or readable."""
    data = storage.read_bytes(alert_url(storage_root, model))
    if data is None:
        return AlertState()
    try:
        return AlertState.model_validate_json(data)
    except ValidationError:
        return AlertState()


def record_check(
    storage_root: str,
    model: str,
    report: MonitorReport,
    now_s: float,
    webhook_url: str | None,
    transport: httpx.BaseTransport | None = None,
) -> AlertState:
    """Apply one monitor check to the stored alert; log and notify when it is raised or cleared."""
    from flywheel.monitoring import next_alert  # SciPy: not for the replicas, which only read

    previous = read_alert(storage_root, model)
    state = next_alert(previous, report, now_s)
    storage.write_text(alert_url(storage_root, model), state.model_dump_json())
    if state.active == previous.active:
        return state
    event = "raised" if state.active else "cleared"
    _log.warning("drift alert %s for model %s: %s", event, model, "; ".join(state.reasons) or "-")
    if webhook_url:
        _notify(webhook_url, {"model": model, "event": event, **state.model_dump()}, transport)
    return state


def _notify(url: str, payload: dict[str, object], transport: httpx.BaseTransport | None) -> None:
    try:
        with httpx.Client(timeout=_WEBHOOK_TIMEOUT_S, transport=transport) as http:
            headers = {"content-type": "application/json"}
            http.post(url, content=json.dumps(payload), headers=headers).raise_for_status()
    except httpx.HTTPError as e:
        _log.warning("drift alert webhook failed (%s); the alert state is stored", type(e).__name__)
