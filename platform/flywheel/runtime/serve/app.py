"""Application builders named by the Serve config (``import_path``), one per kind of app.

Serve calls them with the ``args`` of the config; :mod:`flywheel.serving.config` writes both.
"""

from __future__ import annotations

from typing import Any

from flywheel.runtime.serve.ingress import ModelIngress
from flywheel.runtime.serve.root import Root


def model_app(args: dict[str, Any]) -> Any:
    """The ingress of one served model."""
    return ModelIngress.bind(  # type: ignore[attr-defined]
        str(args["model"]), str(args["tracking_uri"]), str(args["storage_root"]),
        int(args["max_request_bytes"]),
    )  # fmt: skip


def root_app(args: dict[str, Any]) -> Any:
    """The server-wide endpoints."""
    return Root.bind(str(args["storage_root"]))  # type: ignore[attr-defined]
