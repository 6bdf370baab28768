"""Commands about data and models in production: ``data show``, ``monitor``, ``readiness``.

No printing here: :mod:`flywheel.cli.render` prints.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel.cli import render
from flywheel.client import Client

data_app = typer.Typer(help="Data snapshots of experiments.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@data_app.command("show")
def data_show(
    experiment: Annotated[str, typer.Argument(help="Experiment name, as in its spec.")],
    as_json: JsonFlag = False,
) -> None:
    """List an experiment's data snapshots: location, size, schema and the runs that used them."""
    reports = Client().data(experiment)
    if as_json:
        render.json_out(render.snapshots_dict(reports))
    else:
        render.snapshots(reports)


def monitor(
    model: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    last: Annotated[
        int | None,
        typer.Option("--last", min=1, help="Judge the last N sampled requests (default: spec)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Drift per feature and overall, online accuracy, latency and errors per version."""
    report = Client().monitor(model, last)
    if as_json:
        render.json_out(report.model_dump(mode="json"))
    else:
        render.monitor_report(report)


def readiness(
    model: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    version: Annotated[str | None, typer.Option(help="Version to score (default: latest).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score a model version against the ML Test Score (28 tests); log the report to MLflow."""
    report = Client().readiness(model, version)
    if as_json:
        render.json_out(report.model_dump(mode="json"))
    else:
        render.readiness_report(report)
