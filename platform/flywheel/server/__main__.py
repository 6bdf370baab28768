"""``python -m flywheel.server``: run the control plane (``flywheel up`` starts it this way).

It reads the settings from the environment and the teams file, and drives the backend they name
(:mod:`flywheel.server.backend_choice`): the control plane alone holds the Ray token.
"""

from __future__ import annotations

import functools
import logging
import sys

import uvicorn

from flywheel.errors import FlywheelError
from flywheel.server.app import create_app
from flywheel.server.backend_choice import experiment_backend
from flywheel.settings import Settings
from flywheel.specs.teams import load_teams
from flywheel.tracking import end_runs_of_job

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    try:
        teams = load_teams(settings.teams_file)
        backend = experiment_backend(settings, teams)
    except FlywheelError as e:
        print(f"flywheel control plane: {e}", file=sys.stderr)
        return 2
    end_runs = functools.partial(end_runs_of_job, settings.tracking_uri)
    app = create_app(settings, teams, backend, end_runs=end_runs)
    uvicorn.run(app, host=settings.host, port=settings.control_plane_port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
