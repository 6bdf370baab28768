"""schemathesis against the control plane's whole OpenAPI document, with a valid token and
without one: no 5xx, and every answer within the documented schema.

Cost: about 60 s on 2 shared cores (15 examples per operation, with and without a token).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi.checks import positive_data_acceptance

from flywheel.server.app import create_app
from flywheel.settings import Settings

from .helpers import TEAMS, MemoryBackend
from .serving_helpers import serving_plane, stats_server


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    with stats_server() as port:
        serving = serving_plane(tmp_path, port)
        # The serving plane's MLflow registry, which the monitoring routes read too.
        tracking_uri = serving.cluster.tracking_uri
        yield create_app(
            Settings(home=tmp_path / "home", mlflow_tracking_uri=tracking_uri), TEAMS,
            MemoryBackend(), run_queue=False, serving=serving,
        )  # fmt: skip


_settings = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("with_token", [True, False], ids=["admin-token", "no-token"])
def test_every_operation_keeps_its_schema(app: FastAPI, with_token: bool) -> None:
    token = app.state.context.settings.admin_token_path.read_text().strip()
    headers = {"Authorization": f"Bearer {token}"} if with_token else {}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @_settings
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text)
            if not with_token:
                assert response.status_code == 401, (case.method, case.path)
            case.validate_response(response, excluded_checks=_excluded(case))

        check()


def _excluded(case: schemathesis.Case) -> list[CheckFunction]:
    """A schema cannot say what a valid tar.gz is: an upload of random bytes is schema-valid
    and rightly refused with 400, so positive-data acceptance does not apply to submissions."""
    if (case.method, case.path) == ("POST", "/api/v1/experiments"):
        return [positive_data_acceptance]
    # Nor which model versions the registry holds: a schema-valid version may not exist (400),
    # nor which experiments recorded a data snapshot (404).
    if case.path.startswith(("/api/v1/models/", "/api/v1/data/")):
        return [positive_data_acceptance]
    return []
