"""Commands of the ``flywheel`` CLI. No printing here: :mod:`flywheel.cli.render` prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flywheel.cli import k8s, monitoring, render
from flywheel.client import Client
from flywheel.errors import FlywheelError, ServeInputError, SpecError
from flywheel.local import EmbeddedPlatform
from flywheel.settings import Settings
from flywheel.specs.reference import experiment_schema, schema_to_markdown
from flywheel.specs.serving import RolloutMode

EXIT_SPEC_ERROR = 2

app = typer.Typer(
    name="flywheel",
    help="Run ML experiments end to end on a shared Ray cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(k8s.app)

app.add_typer(monitoring.data_app, name="data")
app.command()(monitoring.monitor)
app.command()(monitoring.readiness)

SpecPath = Annotated[Path, typer.Argument(help="Experiment spec (YAML).", show_default=False)]
JobId = Annotated[
    str, typer.Argument(help="Experiment id, as `flywheel submit` printed it.", show_default=False)
]
ModelName = Annotated[str, typer.Argument(help="Registered model name.", show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command()
def up() -> None:
    """Start the embedded platform: Ray head and MLflow server on 127.0.0.1."""
    settings = Settings()
    with render.spinner("starting the platform") as report:
        result = EmbeddedPlatform(settings).up(on_progress=report)
    render.up_result(result)


@app.command()
def down() -> None:
    """Stop what `flywheel up` started."""
    stopped = EmbeddedPlatform(Settings()).down()
    render.down_result(stopped)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show each platform component, its URL and health."""
    state = EmbeddedPlatform(Settings()).status()
    if as_json:
        render.json_out(state.to_dict())
    else:
        render.platform_status(state)


@app.command()
def validate(spec: SpecPath) -> None:
    """Check a spec and its task code; print every problem as FILE:LINE: field: message."""
    parsed = Client().validate(spec)
    render.valid(spec, parsed)


@app.command()
def schema(
    markdown: Annotated[bool, typer.Option(help="Print the Markdown reference instead.")] = False,
) -> None:
    """Print the JSON Schema of experiment specs (generated from the models)."""
    generated = experiment_schema()
    if markdown:
        render.text(schema_to_markdown(generated), end="")
    else:
        render.json_out(generated)


@app.command()
def submit(
    spec: SpecPath,
    follow: Annotated[bool, typer.Option(help="Show live progress until the job ends.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue this experiment's last search instead of a new one.")
    ] = False,
) -> None:
    """Validate a spec, bundle its folder and queue it on the control plane."""
    client = Client()
    job_id = client.submit(spec, resume=resume)
    render.submitted(job_id)
    if follow:
        raise typer.Exit(_follow(client, job_id))


@app.command()
def resume(
    experiment: Annotated[str, typer.Argument(help="Experiment name, as in its spec.")],
    team: Annotated[str | None, typer.Option(help="Team, when several have the name.")] = None,
    follow: Annotated[bool, typer.Option(help="Show live progress until the job ends.")] = False,
) -> None:
    """Continue an experiment's interrupted search: finished trials are not run again."""
    client = Client()
    job_id = client.resume(experiment, team)
    render.submitted(job_id)
    if follow:
        raise typer.Exit(_follow(client, job_id))


@app.command()
def retrain(
    model: ModelName,
    follow: Annotated[bool, typer.Option(help="Show live progress until the job ends.")] = False,
) -> None:
    """Retrain a model from its own spec with its production feedback added (mistakes weighted)."""
    client = Client()
    queued = client.retrain(model)
    render.retrain_queued(queued)
    if follow:
        raise typer.Exit(_follow(client, queued.experiment.id))


@app.command()
def jobs(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List your team's experiments with their state."""
    listed = Client().jobs()
    if as_json:
        render.json_out([render.job_dict(j) for j in listed])
    else:
        render.jobs_table(listed)


@app.command()
def logs(
    job_id: JobId,
    follow: Annotated[bool, typer.Option(help="Keep printing until the job ends.")] = False,
) -> None:
    """Print an experiment's log (its current job's)."""
    client = Client()
    if not follow:
        render.text(client.logs(job_id), end="")
        return
    for update in client.follow(job_id):
        render.lines(update.lines)


@app.command()
def stop(job_id: JobId) -> None:
    """Stop an experiment (a waiting one at once, a running one within a queue step)."""
    render.stopped(job_id, Client().stop(job_id))


@app.command()
def teams(as_json: JsonFlag = False) -> None:
    """Usage against quota of your team (every team with the admin token)."""
    usages = Client().teams()
    if as_json:
        render.json_out([u.model_dump(mode="json") for u in usages])
    else:
        render.teams_table(usages)


@app.command()
def queue(as_json: JsonFlag = False) -> None:
    """The admission queue: waiting experiments in order, why each waits, and usage."""
    view = Client().queue()
    if as_json:
        render.json_out(view.model_dump(mode="json"))
    else:
        render.queue_view(view)


@app.command()
def explain(experiment: JobId, as_json: JsonFlag = False) -> None:
    """Why an experiment waits: which quota, who holds it, its position, an estimate."""
    answer = Client().explain(experiment)
    if as_json:
        render.json_out(answer.model_dump(mode="json"))
    else:
        render.explanation(answer)


token_app = typer.Typer(help="Team tokens (the admin token manages them).", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    team: Annotated[str, typer.Argument(help="Team name from the teams file.", show_default=False)],
) -> None:
    """Create a token for TEAM and print it once (only its hash is stored)."""
    render.token_created(Client().create_token(team))


mlflow_app = typer.Typer(help="MLflow access with your team's identity.", no_args_is_help=True)
app.add_typer(mlflow_app, name="mlflow")


@mlflow_app.command("env")
def mlflow_env() -> None:
    """Print the shell exports with which MLflow's clients and UI read your team's runs:
    `eval "$(flywheel mlflow env)"` (the admin token gets the admin identity)."""
    render.mlflow_exports(Client().mlflow_env())


@app.command()
def deploy(
    model: ModelName,
    version: Annotated[str | None, typer.Option(help="Model version to serve.")] = None,
    alias: Annotated[str | None, typer.Option(help="Serve the version this alias names.")] = None,
) -> None:
    """Serve a registered model version as champion behind the OIP v2 gateway."""
    if version is not None and alias is not None:
        raise ServeInputError("give --version or --alias, not both")
    with render.spinner(f"deploying {model}"):
        result = Client().deploy(model, version, alias)
    render.serve_result("deployed", result)


@app.command()
def rollout(
    model: ModelName,
    version: Annotated[str, typer.Option(help="Version to roll out.", show_default=False)],
    canary: Annotated[
        float | None, typer.Option(help="Canary: share of requests (%) the version answers.")
    ] = None,
    shadow: Annotated[bool, typer.Option(help="Shadow: copies of requests, answers kept.")] = False,
    progressive: Annotated[
        bool, typer.Option(help="Progressive: steps and SLOs of the version's serve spec.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            help="Drive a progressive rollout here until it ends; with --no-wait it holds its "
            "step until `flywheel drive-rollout` runs it."
        ),
    ] = True,
) -> None:
    """Start a version as challenger: --canary PCT, --shadow or --progressive."""
    modes = [m for m, on in (("canary", canary is not None), ("shadow", shadow),
                             ("progressive", progressive)) if on]  # fmt: skip
    if len(modes) != 1:
        raise ServeInputError("give exactly one of --canary PCT, --shadow, --progressive")
    if canary is not None and not 0.0 < canary < 100.0:
        raise ServeInputError(f"--canary is a share of traffic in (0, 100), not {canary:g}")
    mode: RolloutMode = modes[0]  # type: ignore[assignment]
    with render.spinner(f"starting the {mode} rollout of {model} version {version}"):
        result = Client().rollout(model, version, mode, canary, wait=False)
    render.serve_result(f"{mode} rollout", result)
    if mode == "progressive" and wait:
        with render.spinner(f"progressive rollout of {model} version {version}"):
            result = Client().drive_rollout(model)
        render.serve_result("progressive rollout ended", result)


@app.command(name="drive-rollout")
def drive_rollout(model: ModelName) -> None:
    """Run a progressive rollout from its stored step until it promotes or rolls back."""
    with render.spinner(f"progressive rollout of {model}"):
        result = Client().drive_rollout(model)
    render.serve_result("progressive rollout ended", result)


@app.command()
def promote(model: ModelName) -> None:
    """Make the challenger the champion (moves the MLflow alias)."""
    with render.spinner(f"promoting the challenger of {model}"):
        result = Client().promote(model)
    render.serve_result("promoted", result)


@app.command()
def rollback(model: ModelName) -> None:
    """Remove the challenger; the champion answers everything."""
    with render.spinner(f"rolling back the challenger of {model}"):
        result = Client().rollback(model)
    render.serve_result("rolled back", result)


@app.command()
def undeploy(model: ModelName) -> None:
    """Stop serving a model."""
    with render.spinner(f"undeploying {model}"):
        result = Client().undeploy(model)
    render.serve_result("undeployed", result)


@app.command()
def predict(
    model: ModelName,
    request: Annotated[
        str, typer.Option("--json", help="OIP v2 inference request (JSON file; - for stdin).")
    ],
    version: Annotated[str | None, typer.Option(help="Ask this version, not the router.")] = None,
) -> None:
    """Send an inference request through the gateway and print the response."""
    text = sys.stdin.read() if request == "-" else _read_request(Path(request))
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise ServeInputError(f"{request}: not valid JSON: {e}") from e
    render.json_out(Client().predict(model, body, version).model_dump(mode="json"))


@app.command()
def feedback(
    model: ModelName,
    request_id: Annotated[str, typer.Argument(help="The `id` of the answered request.")],
    label: Annotated[str, typer.Argument(help="The true label.")],
) -> None:
    """Report the true label of an answered request (online accuracy per version)."""
    value: int | float | str = int(label) if label.lstrip("-").isdigit() else label
    render.json_out(Client().feedback(model, request_id, value).model_dump(mode="json"))


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """Served models: versions, traffic split, replicas, request rate, online accuracy."""
    listed = Client().models()
    if as_json:
        render.json_out([render.served_version_dict(v) for v in listed])
    else:
        render.models_table(listed)


def _read_request(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ServeInputError(f"cannot read {path}: {e.strerror}") from e


def _follow(client: Client, job_id: str) -> int:
    """Show progress; 0 when the job succeeds, 1 otherwise."""
    with render.FollowView(job_id) as view:
        for update in client.follow(job_id):
            view.update(update)
    return 0 if view.succeeded else 1


def main() -> None:
    """Entry point: user errors become one red line and an exit code, never a traceback.

    Usage errors are typer's own (exit 2); a spec error or a wrong serving request (unknown
    model or version, bad JSON) exits 2, any other FlywheelError 1.
    """
    try:
        app()
    except SpecError as e:
        render.spec_error(e)
        sys.exit(EXIT_SPEC_ERROR)
    except ServeInputError as e:
        render.error(str(e))
        sys.exit(EXIT_SPEC_ERROR)
    except FlywheelError as e:
        render.error(str(e))
        sys.exit(1)
