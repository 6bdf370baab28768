"""``flywheel k8s``: the manifests flywheel would create on Kubernetes, offline (no cluster):
RayJobs of experiments, the teams' Kueue objects, and the RayService of the serving document."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from flywheel.backends.documents import document_store
from flywheel.cli import render
from flywheel.errors import K8sError
from flywheel.k8s.manifests import (
    experiment_to_rayjob,
    serving_to_rayservice,
    teams_to_checked_objects,
)
from flywheel.k8s.objects import to_yaml
from flywheel.k8s.rayjob import K8sTarget
from flywheel.plans import new_job_id
from flywheel.serving.document import ServingDocument
from flywheel.settings import Settings
from flywheel.specs.teams import load_teams
from flywheel.specs.validate import validate_experiment

app = typer.Typer(
    name="k8s",
    help="Print Kubernetes manifests (KubeRay, Kueue) for GitOps; needs no cluster.",
    no_args_is_help=True,
)

_DEFAULT = K8sTarget()
#: Options of the pods' target, shared by the commands that render Ray clusters.
Image = Annotated[str, typer.Option(help="Image of the Ray pods.")]
StorageRoot = Annotated[
    str, typer.Option(help="s3:// storage root (an experiment keeps an s3:// root of its spec).")
]
TrackingUri = Annotated[str, typer.Option(help="MLflow URL as the pods reach it.")]


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
    image: Image = _DEFAULT.image,
    storage_root: StorageRoot = _DEFAULT.storage_root,
    tracking_uri: TrackingUri = _DEFAULT.tracking_uri,
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


@app.command("render-serving")
def render_serving(
    document: Annotated[
        Path | None,
        typer.Argument(
            help="Serving document (JSON; default: the platform's, under the storage root).",
            show_default=False,
        ),
    ] = None,
    team: Annotated[
        str | None, typer.Option(help="Render a team's RayService (named <team>-serving).")
    ] = None,
    image: Image = _DEFAULT.image,
    storage_root: StorageRoot = _DEFAULT.storage_root,
    tracking_uri: TrackingUri = _DEFAULT.tracking_uri,
) -> None:
    """Print the RayService the serving document becomes, as YAML."""
    settings = Settings()
    parsed = _serving_document(document, settings)
    target = _target(image=image, storage_root=storage_root, tracking_uri=tracking_uri)
    rayservice = serving_to_rayservice(
        parsed, target, settings.serve_max_request_bytes, team,
        namespace=settings.serving_namespace, name=settings.serving_name,
    )  # fmt: skip
    render.text(to_yaml([rayservice]), end="")


def _serving_document(path: Path | None, settings: Settings) -> ServingDocument:
    """The document at ``path``, else the platform's (empty when nothing was served yet)."""
    if path is None:
        return document_store(settings.storage_root).read()
    try:
        return ServingDocument.model_validate_json(path.read_text())
    except OSError as e:
        raise K8sError(f"cannot read the serving document {path}: {e.strerror}") from None
    except ValidationError as e:
        raise K8sError(f"{path} is not a serving document: {e.errors()[0]['msg']}") from None


def _target(**options: str) -> K8sTarget:
    """The target from the command's options; a wrong value names its option."""
    try:
        return K8sTarget.model_validate(options)
    except ValidationError as e:
        first = e.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise K8sError(f"{option} {first['input']!r}: {first['msg']}") from None
