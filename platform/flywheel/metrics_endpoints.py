"""The Prometheus endpoints of the embedded platform, as ``flywheel status --json`` lists them.

Pure: settings in, addresses out. All listen on the platform's host (127.0.0.1 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.settings import Settings


@dataclass(frozen=True)
class MetricsEndpoint:
    """One endpoint Prometheus scrapes: what it is, where, and what it needs."""

    name: str
    url: str
    auth: str  # "none", or "bearer" (send `Authorization: Bearer <token in token_path>`)
    token_path: str | None
    metrics: str  # what it exports


def metrics_endpoints(settings: Settings) -> tuple[MetricsEndpoint, ...]:
    """The control plane's ``/metrics`` (admin token), Ray's metrics agent (no auth) and, with
    direct ingress, HAProxy's exporter (no auth)."""
    haproxy = MetricsEndpoint(
        name="haproxy",
        url=f"http://{settings.host}:{settings.serve_haproxy_metrics_port}/metrics",
        auth="none",
        token_path=None,
        metrics="haproxy_* of the gateway's frontend and its backends (the ingress replicas)",
    )
    return (
        MetricsEndpoint(
            name="control_plane",
            url=f"{settings.control_url}/metrics",
            auth="bearer",
            token_path=str(settings.admin_token_path),
            metrics="flywheel_* of the queue, quotas, preemptions and experiments",
        ),
        MetricsEndpoint(
            name="ray",
            url=f"http://{settings.host}:{settings.ray_metrics_port}/metrics",
            auth="none",
            token_path=None,
            metrics="ray_* of Ray and Serve, and ray_flywheel_* of the model gateway",
        ),
    ) + ((haproxy,) if settings.serve_direct_ingress else ())
