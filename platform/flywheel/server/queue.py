"""The queue driver: reconcile experiments with the backend, then admit and preempt.

One thread of the control plane runs :meth:`QueueDriver.step` every ``queue_interval_s``. Each
step reads the database, asks the pure :func:`flywheel.admission.decide` what to do, and records
every change as a compare-and-set transition before it acts on the cluster. A step that dies
half-way loses nothing: the next one (after a restart too) reconciles from the database and
the Ray Jobs API. An admitted experiment whose job the cluster does not know is requeued.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from flywheel.admission import Decision, Workload, decide
from flywheel.backends.base import ExperimentBackend, JobInfo
from flywheel.errors import FlywheelError, JobNotFoundError, PlatformError
from flywheel.plans import PLAN_PATH, JobPlan
from flywheel.server.experiments import demand_resources
from flywheel.server.models import HOLDING_STATES, WAITING_STATES, Experiment
from flywheel.server.saves import SaveProbe
from flywheel.server.states import move
from flywheel.specs.teams import TeamsSpec
from flywheel.storage import download_tree

_log = logging.getLogger(__name__)


class RunCloser(Protocol):
    """Ends the tracked runs a vanished job left open (MLflow in production)."""

    def __call__(self, job_id: str, reason: str) -> int: ...


class FinishedServer(Protocol):
    """Serves what a succeeded job registered, where its plan leaves that to the control plane
    (:class:`flywheel.server.serve_finished.ServeFinished`); PlatformError: try again later."""

    def __call__(self, plan: JobPlan, job_id: str) -> str | None: ...


class QueueDriver:
    """Drives experiments from QUEUED to a final state, one step at a time."""

    def __init__(
        self, sessions: sessionmaker[Session], teams: TeamsSpec, backend: ExperimentBackend,
        interval_s: float, end_runs: RunCloser | None = None, saves: SaveProbe | None = None,
        served: Callable[[], list[Workload]] | None = None,
        job_env: Callable[[str], dict[str, str]] | None = None,
        serve_finished: FinishedServer | None = None,
    ) -> None:  # fmt: skip
        self._sessions = sessions
        self._teams = teams
        self._backend = backend
        self._end_runs = end_runs
        self._interval_s = interval_s
        self._saves = saves or SaveProbe()
        self._served = served or (lambda: [])
        self._job_env = job_env
        self._serve_finished = serve_finished
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run steps in a daemon thread until :meth:`close`."""
        self._thread = threading.Thread(target=self._run, name="flywheel-queue", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def step(self) -> Decision:
        """Reconcile what holds resources, then admit and preempt; returns the decision."""
        with self._sessions.begin() as session:
            holding = session.scalars(
                select(Experiment).where(Experiment.state.in_(HOLDING_STATES))
            ).all()
            for experiment in holding:
                self._reconcile(session, experiment)
        with self._sessions.begin() as session:
            decision = decide(
                self._teams,
                self._backend.capacity(),
                workloads(session, self._teams, self._served()),
            )
            for preemption in decision.preempt:
                self._preempt(session, preemption.victim, preemption.reason)
        for experiment_id in decision.admit:
            self._admit(experiment_id)
        return decision

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except PlatformError as e:  # the cluster is down: keep state, try again later
                _log.warning("queue step skipped: %s", e)
            except Exception:  # a bug: log it and keep the control plane serving
                _log.exception("queue step failed")
            self._stop.wait(self._interval_s)

    def _reconcile(self, session: Session, experiment: Experiment) -> None:
        """Bring one holding experiment up to date with its Ray job."""
        if experiment.ray_job_id is None:
            move(session, experiment, "QUEUED", "admitted without a job; requeued")
            return
        try:
            job = self._backend.get(experiment.ray_job_id)
        except JobNotFoundError:
            reason = f"the cluster no longer knows job {experiment.ray_job_id}; requeued"
            if move(session, experiment, "QUEUED", reason):
                self._close_runs(experiment.ray_job_id, reason)
            return
        if job.finished:
            self._finish(session, experiment, job)
            return
        if experiment.stop_requested:
            self._backend.stop(experiment.ray_job_id)
        if job.state == "RUNNING" and experiment.state == "ADMITTED":
            move(session, experiment, "RUNNING", f"job {job.job_id} started")
        if job.state == "RUNNING" and experiment.state == "RUNNING":
            saved_s = self._saves.last_save_s(experiment)
            if saved_s is not None and saved_s > (experiment.last_checkpoint_at_s or 0.0):
                experiment.last_checkpoint_at_s = saved_s

    def _close_runs(self, job_id: str, reason: str) -> None:
        """End the runs the job left RUNNING; a tracking server that is down leaves them open."""
        if self._end_runs is None:
            return
        try:
            self._end_runs(job_id, reason)
        except Exception as e:
            _log.warning("could not end the runs of job %s: %s", job_id, e)

    def _finish(self, session: Session, experiment: Experiment, job: JobInfo) -> None:
        message = job.message[:2000]
        if job.state == "SUCCEEDED":
            reason = f"job {job.job_id} succeeded"
            if self._serve_finished is not None:
                try:
                    served = self._serve_finished(
                        JobPlan.model_validate_json(experiment.plan_json), job.job_id
                    )
                except PlatformError as e:  # it stays RUNNING; the next step tries again
                    _log.warning("job %s succeeded; %s", job.job_id, e)
                    return
                reason += f"; {served}" if served else ""
            move(session, experiment, "SUCCEEDED", reason, message=message)
            return
        if job.state == "FAILED":
            reason = f"job {job.job_id} failed"
            moved = move(session, experiment, "FAILED", reason, message=message)
        elif experiment.state == "PREEMPTING" and not experiment.stop_requested:
            lost = gpu_minutes_lost(experiment, time.time())
            reason = f"job {job.job_id} drained; waits to resume"
            moved = move(
                session, experiment, "PREEMPTED", reason,
                gpu_minutes_lost=experiment.gpu_minutes_lost + lost, message=message,
            )  # fmt: skip
        else:
            why = "stopped on request" if experiment.stop_requested else "stopped on the cluster"
            reason = f"job {job.job_id} {why}"
            moved = move(session, experiment, "STOPPED", reason, message=message)
        if moved:  # the driver ends its own run; trials killed with it leave theirs RUNNING
            self._close_runs(job.job_id, reason)

    def _preempt(self, session: Session, victim_id: str, reason: str) -> None:
        victim = session.get(Experiment, victim_id)
        if victim is None or victim.state not in ("ADMITTED", "RUNNING"):
            return
        if move(session, victim, "PREEMPTING", reason) and victim.ray_job_id is not None:
            # Ray SIGTERMs the driver, which drains; a job already gone is found next step.
            with contextlib.suppress(JobNotFoundError):
                self._backend.stop(victim.ray_job_id)

    def _admit(self, experiment_id: str) -> None:
        """Record the admission (with the job id it will get), then submit the job."""
        with self._sessions.begin() as session:
            experiment = session.get(Experiment, experiment_id)
            if experiment is None or experiment.state not in WAITING_STATES:
                return
            attempt = experiment.attempt + 1
            resume = experiment.state == "PREEMPTED" or experiment.attempt > 0
            job_id = experiment.id if attempt == 1 else f"{experiment.id}-{attempt}"
            reason = "admitted" + (" to resume" if resume else "")
            admitted = move(
                session, experiment, "ADMITTED", reason, attempt=attempt, ray_job_id=job_id,
                admitted_at_s=time.time(), message="",
            )  # fmt: skip
            plan = attempt_plan(JobPlan.model_validate_json(experiment.plan_json), job_id, resume)
            bundle_url = experiment.bundle_url
        if not admitted:
            return
        try:
            self._submit(plan, bundle_url)
        except FlywheelError as e:
            if isinstance(e, PlatformError):
                return  # the next step finds no job and requeues it
            with self._sessions.begin() as session:
                experiment = session.get(Experiment, experiment_id)
                if experiment is not None and experiment.state == "ADMITTED":
                    move(session, experiment, "FAILED", f"submission refused: {e}", message=str(e))

    def _submit(self, plan: JobPlan, bundle_url: str) -> None:
        with tempfile.TemporaryDirectory(prefix="flywheel-job-") as scratch:
            folder = download_tree(bundle_url, Path(scratch) / "experiment")
            (folder / PLAN_PATH).write_text(plan.model_dump_json(indent=2))
            self._backend.submit(self._with_secrets(plan), folder)

    def _with_secrets(self, plan: JobPlan) -> JobPlan:
        """``plan`` with its team's secret variables (its MLflow identity) added for the
        backend only: the stored plan and the plan file of the job never hold them."""
        if self._job_env is None:
            return plan
        env_vars = {**plan.env_vars, **self._job_env(plan.spec.team)}
        return plan.model_copy(update={"env_vars": env_vars})


def workloads(
    session: Session, teams: TeamsSpec, served: Sequence[Workload] = ()
) -> list[Workload]:
    """Every waiting and holding experiment of a team in the teams file, as the admission
    function sees it (a team taken out of the file keeps its rows, but nothing of it is admitted
    any more), then the ``served`` models (:mod:`flywheel.server.serving_usage`)."""
    states = WAITING_STATES | HOLDING_STATES
    names = [t.name for t in teams.teams]
    query = select(Experiment).where(Experiment.state.in_(states), Experiment.team.in_(names))
    rows = session.scalars(query).all()
    return [
        Workload(
            id=e.id,
            team=e.team,
            priority=e.priority,
            submitted_at_s=e.submitted_at_s,
            demand=demand_resources(e),
            state="queued" if e.state in WAITING_STATES else "admitted",
            last_checkpoint_at_s=e.last_checkpoint_at_s,
            admitted_at_s=e.admitted_at_s if e.state in HOLDING_STATES else None,
            draining=e.state == "PREEMPTING",
        )
        for e in rows
    ] + list(served)


def attempt_plan(plan: JobPlan, job_id: str, resume: bool) -> JobPlan:
    """The plan of one attempt: its own job id; a later attempt continues the search."""
    return plan.model_copy(
        update={
            "job_id": job_id,
            "resume": plan.resume or (resume and plan.spec.search is not None),
        }
    )


def gpu_minutes_lost(experiment: Experiment, now_s: float) -> float:
    """GPU-minutes since the later of the last save and the admission, which a preemption
    throws away."""
    marks = [t for t in (experiment.last_checkpoint_at_s, experiment.admitted_at_s) if t]
    since_s = max(marks) if marks else now_s
    return experiment.demand_gpu * max(0.0, now_s - since_s) / 60.0
