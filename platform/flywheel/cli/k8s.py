"""``flywheel k8s``: the manifests flywheel would create on Kubernetes, offline (no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from flywheel.cli import render
from flywheel.errors import K8sError
from flywheel.k8s.manifests import experiment_to_rayjob, teams_to_checked_objects
from flywheel.k8s.objects import to_yaml
from flywheel.k8s.rayjob import K8sTarget
from flywheel.plans import new_job_id
from flywheel.settings import Settings
from flywheel.specs.teams import load_teams
from flywheel.specs.validate import validate_experiment

app = typer.Typer(
    name="k8s",
    help="Print Kubernetes manifests (KubeRay, Kueue) for GitOps; needs no cluster.",
    no_args_is_help=True,
)

_DEFAULT = K8sTarget()


@app.command("render")
def render_experiment(
    spec: Annotated[Path, typer.Argument(help="Experiment spec (YAML).", show_default=False)],
    team: Annotated[
        str | None, typer.Option(help="Render for this team instead of the spec's.")
    ] = None,
    teams: Annotated[Path, typer.Option(help="Teams file: queues and priority classes.")] = Path(
        "cluster/teams.yaml"
    ),
    job_id: Annotated[
        str | None, typer.Option(help="Job id (default: a new one, as `submit` makes).")
    ] = None,
    image: Annotated[str, typer.Option(help="Image of the Ray pods.")] = _DEFAULT.image,
    storage_root: Annotated[
        str, typer.Option(help="s3:// storage root, unless the spec names one.")
    ] = _DEFAULT.storage_root,
    tracking_uri: Annotated[
        str, typer.Option(help="MLflow URL as the pods reach it.")
    ] = _DEFAULT.tracking_uri,
) -> None:
    """Print the RayJob an experiment becomes, as YAML."""
    parsed = validate_experiment(spec)
    if team is not None:
        parsed = parsed.model_copy(update={"team": team})
    target = _target(image=image, storage_root=storage_root, tracking_uri=tracking_uri)
    rayjob = experiment_to_rayjob(
        parsed,
        spec.name,
        spec.read_bytes(),
        load_teams(teams),
        target,
        Settings(),
        job_id or new_job_id(parsed),
    )
    render.text(to_yaml([rayjob]), end="")


@app.command("render-teams")
def render_teams(
    teams: Annotated[Path, typer.Argument(help="Teams file (YAML).", show_default=False)],
) -> None:
    """Print the Kueue objects, namespaces and quotas of a teams file, as YAML."""
    render.text(to_yaml(teams_to_checked_objects(load_teams(teams))), end="")


def _target(**options: str) -> K8sTarget:
    """The target from the command's options; a wrong value names its option."""
    try:
        return K8sTarget.model_validate(options)
    except ValidationError as e:
        first = e.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise K8sError(f"{option} {first['input']!r}: {first['msg']}") from None
