"""All output of the CLI: tables, progress and errors. The only module that prints."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from flywheel.client import JobUpdate, ServedVersion, ServeResult
from flywheel.errors import SpecError
from flywheel.local import PlatformStatus, UpResult
from flywheel.progress import ProgressEvent
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.teams import Resources
from flywheel.wire import (
    ExperimentView,
    Explanation,
    MlflowAccess,
    MonitorReport,
    QueueView,
    ReadinessReport,
    RetrainView,
    SnapshotManifest,
    SnapshotReport,
    TeamUsage,
    TokenCreated,
)

_TOP_FEATURES = 10

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def text(value: str, end: str = "\n") -> None:
    """Plain text, unstyled (JSON, schemas, logs)."""
    out.out(value, end=end, highlight=False)


def lines(values: Iterable[str]) -> None:
    for line in values:
        text(line)


def json_out(value: Any) -> None:
    text(json.dumps(value, indent=2, sort_keys=True))


def error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")


def spec_error(e: SpecError) -> None:
    for problem in e.problems:
        err.print(f"[red]{escape(str(problem))}[/]")
    count = len(e.problems)
    err.print(f"[bold red]{count} problem{'s' if count != 1 else ''}; nothing was submitted[/]")


def valid(path: Path, spec: ExperimentSpec) -> None:
    out.print(f"[green]ok[/] {escape(str(path))}: experiment {spec.name!r} of team {spec.team!r}")


@contextmanager
def spinner(message: str) -> Iterator[Callable[[str], None]]:
    """A status line; yields a function that changes its text."""
    with err.status(message) as status:
        yield lambda m: status.update(escape(m))


def up_result(result: UpResult) -> None:
    for name in result.already_running:
        out.print(f"[yellow]{name}[/] was already running")
    for name in result.started:
        out.print(f"[green]{name}[/] started")
    platform_status(result.status)


def down_result(stopped: tuple[str, ...]) -> None:
    if not stopped:
        out.print("nothing was running")
    for name in stopped:
        out.print(f"[green]{name}[/] stopped")


def platform_status(state: PlatformStatus) -> None:
    table = Table(title=f"flywheel platform ({state.home})")
    for column in ("component", "url", "health", "pid"):
        table.add_column(column)
    for c in state.components:
        health = "[green]healthy[/]" if c.healthy else f"[red]{escape(c.detail)}[/]"
        table.add_row(c.name, c.url, health, str(c.pid or "-"))
    out.print(table)
    if state.running:
        data = state.to_dict()
        out.print(
            f"Ray dashboard: {data['ray_dashboard_url']}  (token in {data['ray_auth_token_path']})"
        )
        out.print(f"MLflow UI:     {data['mlflow_url']}")
        out.print(
            f"Control plane: {data['control_plane']}  (admin token in {data['admin_token_path']}; "
            "`flywheel token create TEAM` makes team tokens)"
        )


def submitted(experiment_id: str) -> None:
    out.print(f"submitted job [bold]{experiment_id}[/]")


def retrain_queued(queued: RetrainView) -> None:
    feedback = queued.feedback
    out.print(
        f"submitted job [bold]{queued.experiment.id}[/]: retrains {feedback.model} version "
        f"{feedback.from_version} with {feedback.requests} fed-back requests "
        f"({feedback.wrong} it got wrong, each repeated; {feedback.rows} training rows)"
    )
    out.print(f"feedback set: {feedback.url}")


def stopped(experiment_id: str, was_running: bool) -> None:
    out.print(f"job {experiment_id} {'stopping' if was_running else 'was not running'}")


def job_dict(job: ExperimentView) -> dict[str, Any]:
    return job.model_dump(mode="json")


def jobs_table(jobs: list[ExperimentView]) -> None:
    table = Table()
    for column in ("experiment", "state", "team", "name", "attempt", "submitted"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            job.id, _state(job.state), job.team, job.name, str(job.attempt),
            _time(int(job.submitted_at_s * 1000)),
        )  # fmt: skip
    out.print(table if jobs else "no experiments")


def teams_table(usages: list[TeamUsage]) -> None:
    table = Table(title="usage against quota")
    for column in ("team", "priority", "cpu", "gpu", "memory GiB", "admitted", "queued",
                   "GPU-min lost"):  # fmt: skip
        table.add_column(column)
    for u in usages:
        table.add_row(
            u.name, str(u.priority), _used(u.usage.cpu, u.quota.cpu, u.borrowing_limit.cpu),
            _used(u.usage.gpu, u.quota.gpu, u.borrowing_limit.gpu),
            _used(u.usage.memory_gib, u.quota.memory_gib, u.borrowing_limit.memory_gib),
            f"{u.admitted}/{u.max_concurrent_experiments}", str(u.queued),
            f"{u.gpu_minutes_lost:.1f}",
        )  # fmt: skip
    out.print(table)


def queue_view(view: QueueView) -> None:
    out.print(f"cluster capacity: {_resources(view.capacity)}")
    table = Table(title="waiting, in admission order")
    for column in ("experiment", "team", "state", "priority", "position", "why"):
        table.add_column(column)
    for e in view.waiting:
        table.add_row(e.experiment, e.team, _state(e.state), str(e.priority), str(e.position),
                      escape(e.reason))  # fmt: skip
    out.print(table if view.waiting else "nothing waits")
    teams_table(view.teams)


def explanation(e: Explanation) -> None:
    if not e.waiting:
        out.print(escape(e.reason))
        return
    out.print(f"[bold]{e.experiment}[/] waits ({e.state}), position {e.position} in its team's "
              "queue")  # fmt: skip
    out.print(f"why: {escape(e.reason)}")
    if e.blocking_resource:
        out.print(f"blocking resource: {e.blocking_resource}")
    if e.holders:
        out.print(f"held by: {', '.join(e.holders)}")
    if e.estimate_s is not None:
        out.print(f"estimate: admitted in about {e.estimate_s:.0f} s ({escape(e.estimate_reason)})")
    elif e.estimate_reason:
        out.print(f"estimate: {escape(e.estimate_reason)}")


def token_created(created: TokenCreated) -> None:
    err.print(f"token for team [bold]{created.team}[/] (shown once; only its hash is kept):")
    text(created.token)


def mlflow_exports(access: MlflowAccess) -> None:
    """``export`` lines for a POSIX shell, values quoted."""
    variables = {
        "MLFLOW_TRACKING_URI": access.tracking_uri,
        "MLFLOW_TRACKING_USERNAME": access.username,
        "MLFLOW_TRACKING_PASSWORD": access.password,
    }
    for name, value in variables.items():
        text(f"export {name}={shlex.quote(value)}" if value is not None else f"unset {name}")


class FollowView:
    """Live view of a running job: stage, epoch bar and latest metrics."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.succeeded = False
        self._failure = ""
        self._job: ExperimentView | None = None
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            console=out,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> FollowView:
        self._progress.start()
        self._task = self._progress.add_task("pending", total=None, metrics="")
        return self

    def update(self, update: JobUpdate) -> None:
        self._job = update.job
        for event in update.events:
            self._show(event)
        if update.job.state in ("QUEUED", "PREEMPTED", "ADMITTED"):
            self._set(description=update.job.state.lower())

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()
        job = self._job
        if job is None:
            return
        self.succeeded = job.state == "SUCCEEDED"
        if self.succeeded:
            out.print(f"[bold green]job {job.id} succeeded[/]")
        else:
            reason = self._failure or job.message or "no reason given"
            err.print(f"[bold red]job {job.id} {job.state.lower()}:[/] {escape(reason)}")

    def _show(self, event: ProgressEvent) -> None:
        if event.stage == "failed":
            self._failure = event.message
            return
        if event.stage in ("train", "search") and event.epochs:
            self._set(
                description=event.stage,
                total=event.epochs,
                completed=event.epoch or 0,
                metrics=_metrics(event.metrics),
            )
        else:
            self._set(description=event.stage)
        if event.message or (event.metrics and event.stage != "train"):
            self._progress.console.print(
                f"[cyan]{event.stage}[/] {escape(event.message)} {_metrics(event.metrics)}".rstrip()
            )

    def _set(self, **fields: Any) -> None:
        if self._task is not None:
            self._progress.update(self._task, **fields)


def serve_result(what: str, result: ServeResult) -> None:
    """What a serving action left: champion, challenger and its share, and how long it took."""
    line = f"[green]{what}[/] {result.model}"
    if result.champion:
        line += f": champion v{result.champion}"
    if result.challenger:
        share = f"{result.challenger_percent:g}%" if result.mode != "shadow" else "shadow"
        line += f", challenger v{result.challenger} ({result.mode}, {share})"
    if result.decision:
        line += f"; decision {result.decision}: {escape(str(result.reason))}"
    out.print(f"{line} [dim]({result.elapsed_s:.1f} s, generation {result.generation})[/]")


def models_table(versions: list[ServedVersion]) -> None:
    """One table per served model, one row per version: fits 80 columns, no header is cut."""
    if not versions:
        out.print("no models served")
        return
    for model in sorted({v.model for v in versions}):
        out.print(_model_table(model, [v for v in versions if v.model == model]))
    out.print("[dim]share: traffic answered; repl: replicas; done: answered; err: failed;[/]")
    out.print("[dim]agree: shadow agrees with the answer; acc (n): accuracy over n labels[/]")


def _model_table(model: str, versions: list[ServedVersion]) -> Table:
    table = Table(
        title=escape(model), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
        collapse_padding=True,
    )  # fmt: skip
    columns = ("ver", "role", "share", "repl", "req/s", "done", "err", "agree", "acc (n)")
    for column in columns:
        table.add_column(column, no_wrap=True, min_width=len(column))
    for v in versions:
        s = v.stats
        table.add_row(
            v.version, v.role, f"{v.traffic_percent:g}%", str(v.replicas),
            f"{s.request_rate_per_s:.1f}", str(s.requests), str(s.errors),
            _ratio(s.shadow_agreement), f"{_ratio(s.online_accuracy)} ({s.feedback})",
        )  # fmt: skip
    return table


def served_version_dict(version: ServedVersion) -> dict[str, Any]:
    """A served version as JSON for `flywheel models --json`."""
    return version.model_dump(mode="json")


def serve_result_dict(result: ServeResult) -> dict[str, Any]:
    return {**result.model_dump(mode="json"), "versions": list(result.versions)}


def snapshots(reports: list[SnapshotReport]) -> None:
    """Each snapshot of an experiment: where, how big, its schema and the runs that used it."""
    for report in reports:
        manifest = report.manifest
        out.print(f"[bold]snapshot {report.fingerprint}[/]")
        out.print(f"  location  {escape(report.url)}")
        if manifest is None:
            out.print("  [red]missing from the storage root[/] (deleted after the runs)")
        else:
            rows = ", ".join(f"{p.name} {p.rows} rows" for p in manifest.parts)
            out.print(f"  source    {escape(manifest.source)}  ({rows})")
            out.print(f"  size      {_size(manifest.size_bytes)}  created {manifest.created_at}")
            out.print(f"  schema    {_schema(manifest)}")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("run", "experiment", "status", "started"):
            table.add_column(column)
        for run in report.runs:
            table.add_row(run.run_name, run.experiment, _state(run.status),
                          _time(run.start_time_ms))  # fmt: skip
        out.print(table)


def snapshots_dict(reports: list[SnapshotReport]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in reports]


def monitor_report(report: MonitorReport) -> None:
    """The verdict, one row per version, then the most drifted features of the busiest one."""
    verdict = "[bold red]drift[/]" if report.drift else "[green]no drift[/]"
    out.print(f"{report.model}: {verdict} over {report.requests} logged requests")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("version", "requests", "error rate", "p50 ms", "p95 ms", "accuracy (labels)",
                   "drift", "MMD p", "predictions p"):  # fmt: skip
        table.add_column(column)
    for v in report.versions:
        drift = "yes" if v.drift else "no" if v.enough_requests else "too few requests"
        if not v.profiled:
            drift = "no profile"
        table.add_row(
            v.version, str(v.requests), _ratio(v.error_rate), _number(v.latency_p50_ms),
            _number(v.latency_p95_ms), f"{_ratio(v.online_accuracy)} ({v.feedback})", drift,
            _ratio(v.multivariate_p_value), _ratio(v.prediction_p_value),
        )  # fmt: skip
    out.print(table if report.versions else "no logged requests in the window")
    for v in report.versions:
        for reason in v.reasons:
            out.print(f"  [red]v{v.version}[/] {escape(reason)}")
    top = sorted(report.features, key=lambda f: (-f.drifted, -f.psi))[:_TOP_FEATURES]
    if top:
        features = Table(title="features (most drifted first)", box=box.SIMPLE_HEAD)
        for column in ("feature", "PSI", "KS", "KS p", "drifted"):
            features.add_column(column)
        for f in top:
            features.add_row(f.name, f"{f.psi:.3f}", f"{f.ks_statistic:.3f}",
                             f"{f.ks_p_value:.2g}", "yes" if f.drifted else "")  # fmt: skip
        out.print(features)
    if report.alert is not None and report.alert.active:
        out.print(
            f"[bold red]alert active[/] since {_time(int((report.alert.since_s or 0) * 1000))}"
        )
    if report.retraining is not None:
        out.print(f"the alert queued retraining [bold]{report.retraining}[/]")


def readiness_report(report: ReadinessReport) -> None:
    """The 28 tests by group, then the scores."""
    table = Table(title=f"ML Test Score of {report.model} version {report.version}",
                  box=box.SIMPLE_HEAD, pad_edge=False)  # fmt: skip
    for column in ("test", "", "status", "evidence"):
        table.add_column(column)
    colour = {"passed": "green", "failed": "red", "not verifiable": "dim"}
    for t in report.tests:
        table.add_row(t.id, escape(t.title), f"[{colour[t.status]}]{t.status}[/]",
                      escape(t.evidence))  # fmt: skip
    out.print(table)
    groups = "  ".join(f"{g} {s:g}" for g, s in report.group_scores.items())
    verified = f"{report.verified} of {len(report.tests)} tests verified by the platform"
    out.print(f"scores: {groups}; final score {report.score:g} ({verified})")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _schema(manifest: SnapshotManifest) -> str:
    """Columns in brief: runs of x0..xN with one type are folded into one entry."""
    features = [c for c in manifest.columns if c.name.startswith("x") and c.name[1:].isdigit()]
    others = [c for c in manifest.columns if c not in features]
    parts = [f"{c.name}: {c.type}" for c in others if c.name != "y"]
    if features:
        parts.append(f"x0..x{len(features) - 1}: {features[0].type}")
    parts += [f"{c.name}: {c.type}" for c in others if c.name == "y"]
    shape = "x".join(map(str, manifest.feature_shape)) or "scalar"
    return f"{', '.join(parts)}  (features per example: {shape})"


def _size(size_bytes: int) -> str:
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _used(used: float, quota: float, borrow: float) -> str:
    return f"{used:g}/{quota:g}" + (f" (+{borrow:g})" if borrow else "")


def _resources(r: Resources) -> str:
    return f"cpu {r.cpu:g}, gpu {r.gpu}, memory {r.memory_gib:g} GiB"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))


def _state(state: str) -> str:
    colour = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "cyan", "STOPPED": "yellow"}
    return f"[{colour.get(state, 'white')}]{state}[/]"


def _time(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
