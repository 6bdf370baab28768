"""All output of the CLI: tables, progress and errors. The only module that prints."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
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
from flywheel.jobs import JobInfo
from flywheel.local import PlatformStatus, UpResult
from flywheel.progress import ProgressEvent
from flywheel.specs.experiment import ExperimentSpec

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


def submitted(job_id: str) -> None:
    out.print(f"submitted job [bold]{job_id}[/]")


def stopped(job_id: str, was_running: bool) -> None:
    out.print(f"job {job_id} {'stopping' if was_running else 'was not running'}")


def job_dict(job: JobInfo) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "state": job.state,
        "team": job.team,
        "experiment": job.experiment,
        "spec_sha256": job.spec_sha256,
        "bundle_url": job.bundle_url,
        "message": job.message,
        "start_time_ms": job.start_time_ms,
        "end_time_ms": job.end_time_ms,
    }


def jobs_table(jobs: list[JobInfo]) -> None:
    table = Table()
    for column in ("job", "state", "team", "experiment", "started"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            job.job_id, _state(job.state), job.team, job.experiment, _time(job.start_time_ms)
        )
    out.print(table if jobs else "no jobs")


class FollowView:
    """Live view of a running job: stage, epoch bar and latest metrics."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.succeeded = False
        self._failure = ""
        self._job: JobInfo | None = None
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
        if update.job.state == "PENDING":
            self._set(description="pending")

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()
        job = self._job
        if job is None:
            return
        self.succeeded = job.state == "SUCCEEDED"
        if self.succeeded:
            out.print(f"[bold green]job {job.job_id} succeeded[/]")
        else:
            reason = self._failure or job.message or "no reason given"
            err.print(f"[bold red]job {job.job_id} {job.state.lower()}:[/] {escape(reason)}")

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
    return {**asdict(version), "stats": version.stats.model_dump(mode="json")}


def serve_result_dict(result: ServeResult) -> dict[str, Any]:
    return {**asdict(result), "versions": list(result.versions)}


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
