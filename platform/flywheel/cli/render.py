"""All output of the CLI: tables, progress and errors. The only module that prints."""

from __future__ import annotations

import json
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

from flywheel.client import JobUpdate
from flywheel.errors import SpecError
from flywheel.local import PlatformStatus, UpResult
from flywheel.progress import ProgressEvent
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.teams import Resources
from flywheel.wire import ExperimentView, Explanation, QueueView, TeamUsage, TokenCreated

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


def serve_result(what: str, result: dict[str, Any]) -> None:
    """What a serving action left: champion, challenger and its share."""
    if "job_id" in result:
        job = result["job_id"]
        out.print(f"{what} runs as job [bold]{job}[/]; follow it: flywheel logs {job} --follow")
        return
    line = f"[green]{what}[/] {result['model']}"
    if result.get("champion"):
        line += f": champion v{result['champion']}"
    if result.get("challenger"):
        share = f"{result['challenger_percent']:g}%" if result["mode"] != "shadow" else "shadow"
        line += f", challenger v{result['challenger']} ({result['mode']}, {share})"
    if result.get("decision"):
        line += f"; decision {result['decision']}: {escape(str(result['reason']))}"
    out.print(line)


def models_table(versions: list[dict[str, Any]]) -> None:
    """One row per served version; a challenger's role is its rollout mode."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = ("model", "version", "role", "traffic", "replicas", "req/s", "answered", "errors",
               "shadow agrees", "accuracy (labels)")  # fmt: skip
    for column in columns:
        table.add_column(column, no_wrap=column in ("model", "role"))
    for v in versions:
        role = v.get("mode") or v["role"]
        table.add_row(
            v["model"], str(v["version"]), role, f"{v['traffic_percent']:g}%", str(v["replicas"]),
            f"{v['request_rate_per_s']:.2f}", str(v["requests"]), str(v["errors"]),
            _ratio(v.get("shadow_agreement")),
            f"{_ratio(v.get('online_accuracy'))} ({v['feedback']})",
        )  # fmt: skip
    out.print(table if versions else "no models served")


def _used(used: float, quota: float, borrow: float) -> str:
    return f"{used:g}/{quota:g}" + (f" (+{borrow:g})" if borrow else "")


def _resources(r: Resources) -> str:
    return f"cpu {r.cpu:g}, gpu {r.gpu}, memory {r.memory_gib:g} GiB"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))


def _state(state: str) -> str:
    colour = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "cyan", "STOPPED": "yellow"}
    return f"[{colour.get(state, 'white')}]{state}[/]"


def _time(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
