"""The HAProxy launcher confines every frontend of Serve's generated configuration to one host."""

from __future__ import annotations

import subprocess
from pathlib import Path

from flywheel.haproxy import direct_ingress_env, haproxy_binary, haproxy_folder, write_launcher
from flywheel.settings import Settings

# The bind lines of Ray 2.60's template (ray/serve/_private/haproxy_templates.py), as rendered.
GENERATED = """\
global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend prometheus
    bind :{metrics}
    http-request use-service prometheus-exporter if {{ path /metrics }}
frontend http_frontend
    bind 127.0.0.1:{http}
    default_backend none
frontend wildcard_v4
    bind 0.0.0.0:{other}
    default_backend none
backend none
listen stats
  bind *:{stats}
  stats enable
  stats uri /stats
"""


def test_the_launcher_rewrites_wildcard_binds_and_haproxy_accepts_the_result(
    tmp_path: Path,
) -> None:
    launcher = tmp_path / "run" / "haproxy-launcher"
    write_launcher(launcher, "127.0.0.1", haproxy_binary())
    config = tmp_path / "haproxy.cfg"
    config.write_text(GENERATED.format(metrics=19101, http=18000, other=18001, stats=18404))

    checked = subprocess.run(
        [str(launcher), "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )

    assert checked.returncode == 0, checked.stderr
    binds = [line.split()[1] for line in config.read_text().splitlines() if "bind " in line]
    assert binds == ["127.0.0.1:19101", "127.0.0.1:18000", "127.0.0.1:18001", "127.0.0.1:18404"]
    assert launcher.stat().st_mode & 0o777 == 0o755


def test_a_broken_configuration_still_fails_through_the_launcher(tmp_path: Path) -> None:
    launcher = tmp_path / "haproxy-launcher"
    write_launcher(launcher, "127.0.0.1", haproxy_binary())
    config = tmp_path / "haproxy.cfg"
    config.write_text("frontend broken\n    bind *:18000\n    no-such-keyword\n")

    checked = subprocess.run(
        [str(launcher), "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )

    assert checked.returncode != 0
    assert "127.0.0.1:18000" in config.read_text()


def test_direct_ingress_settings_reach_serve_and_stay_off_when_disabled(tmp_path: Path) -> None:
    on = Settings(home=tmp_path, serve_haproxy_stats_port=1234, serve_fallback_port=4321)
    env = direct_ingress_env(on, tmp_path / "launcher")

    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(tmp_path / "launcher")
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "1234"
    assert env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] == "4321"
    # Serve adds a 56-character node id below the folder; HAProxy allows 97 bytes per socket.
    assert len(env["RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"]) + 57 <= 97
    assert haproxy_folder(on) != haproxy_folder(Settings(home=tmp_path / "other"))
    assert direct_ingress_env(Settings(home=tmp_path, serve_direct_ingress=False), tmp_path) == {}
