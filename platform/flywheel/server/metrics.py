"""``GET /metrics``: the control plane's state in Prometheus' text format, read at scrape time.

Every value is computed from the database when Prometheus scrapes (a custom collector on a
registry of the app's own), so a restart of the control plane loses nothing and two replicas
answer the same. The endpoint needs the admin token (Prometheus sends it with
``authorization: {credentials_file: ...}``): the metrics name every team, and a team token must
never read another team's numbers.

Metrics (labels in braces):

- ``flywheel_queued_experiments{team}``: experiments waiting for admission (QUEUED, PREEMPTED).
- ``flywheel_admission_delay_seconds{team}``: histogram of the time from entering the queue to
  admission, over every admission the database records.
- ``flywheel_team_used_gpus{team}``, ``flywheel_team_quota_gpus{team}``,
  ``flywheel_team_used_cpu_cores{team}``, ``flywheel_team_quota_cpu_cores{team}``: what each
  team holds now against its quota.
- ``flywheel_preemptions_total{team}``: experiments of the team asked to drain (PREEMPTING).
- ``flywheel_experiments{team,state}``: experiments in each state.

Drift, from the last monitor check of each model (:mod:`flywheel.drift_scores`, stored under the
storage root by every check):

- ``flywheel_model_drift{model}``, ``flywheel_model_drift_alert{model}``: the last window's
  verdict, and whether the drift alert is raised (1 or 0).
- ``flywheel_model_monitor_check_timestamp_seconds{model}``: when the last check ran.
- ``flywheel_model_drift_psi_max{model,version}``, ``flywheel_model_drift_ks_statistic_max{...}``:
  the largest per-feature PSI and KS statistic of the version's window.
- ``flywheel_model_drift_mmd_p_value{model,version}``,
  ``flywheel_model_drift_prediction_p_value{model,version}``: the multivariate and prediction
  tests' p-values (small: drift).
- ``flywheel_model_online_accuracy_ratio{model,version}``: the share of feedback it got right.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from flywheel.admission import Workload, usage_by_team
from flywheel.drift_scores import read_all_scores
from flywheel.server.models import STATES, WAITING_STATES, Experiment, Transition
from flywheel.server.queue import workloads
from flywheel.server.routes import CallerDep
from flywheel.specs.teams import Resources, TeamsSpec

#: Upper bounds (s) of the admission delay histogram: a second to a day.
ADMISSION_DELAY_BUCKETS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)


@dataclass(frozen=True)
class Admission:
    """One admission: the team, and how long the experiment had waited for it (s)."""

    team: str
    delay_s: float


def metrics_registry(
    sessions: sessionmaker[Session], teams: TeamsSpec, storage_root: str | None = None,
    served: Callable[[], list[Workload]] | None = None,
) -> CollectorRegistry:  # fmt: skip
    """A registry of the app's own (no global state) holding the database collector and, with a
    storage root, the drift collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControlPlaneCollector(sessions, teams, served))
    if storage_root is not None:
        registry.register(DriftCollector(storage_root))
    return registry


def metrics(request: Request, who: CallerDep) -> Response:
    """The control plane's metrics in Prometheus' text format (admin token only)."""
    who.require_admin("the metrics of every team")
    body = generate_latest(request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class ControlPlaneCollector(Collector):
    """Reads the database at each scrape; see the module docstring for what it exports."""

    def __init__(
        self, sessions: sessionmaker[Session], teams: TeamsSpec,
        served: Callable[[], list[Workload]] | None = None,
    ) -> None:  # fmt: skip
        self._sessions = sessions
        self._teams = teams
        self._served = served or (lambda: [])

    def collect(self) -> Iterable[Metric]:
        names = [t.name for t in self._teams.teams]
        with self._sessions.begin() as session:
            counts = _state_counts(session)
            usage = usage_by_team(self._teams, workloads(session, self._teams, self._served()))
            admissions = admissions_of(_transitions(session))
            preempted = _preemptions(session)
        yield _team_gauge(
            "flywheel_queued_experiments", "Experiments waiting for admission.",
            {t: sum(counts.get((t, s), 0) for s in WAITING_STATES) for t in names},
        )  # fmt: skip
        yield admission_histogram(admissions, names)
        yield from self._resources(usage)
        preemptions = CounterMetricFamily(
            "flywheel_preemptions", "Experiments asked to drain for a quota.", labels=["team"]
        )
        for team in names:
            preemptions.add_metric([team], preempted.get(team, 0))
        yield preemptions
        by_state = GaugeMetricFamily(
            "flywheel_experiments", "Experiments in each state.", labels=["team", "state"]
        )
        for team in names:
            for state in STATES:
                by_state.add_metric([team, state], counts.get((team, state), 0))
        yield by_state

    def _resources(self, usage: dict[str, Resources]) -> Iterator[Metric]:
        held = {t.name: usage.get(t.name, Resources()) for t in self._teams.teams}
        quota = {t.name: t.quota for t in self._teams.teams}
        yield _team_gauge(
            "flywheel_team_used_gpus",
            "GPUs the team's admitted experiments and served models hold.",
            {t: r.gpu for t, r in held.items()},
        )
        yield _team_gauge(
            "flywheel_team_quota_gpus",
            "The team's GPU quota.",
            {t: r.gpu for t, r in quota.items()},
        )
        yield _team_gauge(
            "flywheel_team_used_cpu_cores",
            "CPU cores the team's admitted experiments and served models hold.",
            {t: r.cpu for t, r in held.items()},
        )
        yield _team_gauge(
            "flywheel_team_quota_cpu_cores",
            "The team's CPU quota, in cores.",
            {t: r.cpu for t, r in quota.items()},
        )


class DriftCollector(Collector):
    """Reads the stored scores of every model's last monitor check at each scrape."""

    _VERSION_GAUGES = (
        ("flywheel_model_drift_psi_max", "Largest per-feature PSI of the last window.", "psi_max"),
        ("flywheel_model_drift_ks_statistic_max", "Largest per-feature KS statistic.",
         "ks_statistic_max"),
        ("flywheel_model_drift_mmd_p_value", "p-value of the multivariate (MMD) test.",
         "multivariate_p_value"),
        ("flywheel_model_drift_prediction_p_value", "p-value of the prediction test.",
         "prediction_p_value"),
        ("flywheel_model_online_accuracy_ratio", "Share of feedback the version got right.",
         "online_accuracy"),
    )  # fmt: skip

    def __init__(self, storage_root: str) -> None:
        self._root = storage_root

    def collect(self) -> Iterable[Metric]:
        scores = read_all_scores(self._root)
        per_model = (
            ("flywheel_model_drift", "1 when the last monitor window drifted.",
             lambda s: float(s.drift)),
            ("flywheel_model_drift_alert", "1 while the model's drift alert is raised.",
             lambda s: float(s.alert_active)),
            ("flywheel_model_monitor_check_timestamp_seconds", "When the last check ran.",
             lambda s: s.checked_s),
        )  # fmt: skip
        for name, text, value in per_model:
            gauge = GaugeMetricFamily(name, text, labels=["model"])
            for model in scores:
                gauge.add_metric([model.model], value(model))
            yield gauge
        for name, text, field in self._VERSION_GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["model", "version"])
            for model in scores:
                for version in model.versions:
                    number = getattr(version, field)
                    if number is not None:
                        gauge.add_metric([model.model, version.version], float(number))
            yield gauge


def admissions_of(transitions: Sequence[tuple[str, str, str, float]]) -> list[Admission]:
    """Each admission and its wait, from ``(experiment, team, to_state, at_s)`` rows in time
    order: the wait runs from the experiment's last entry into a waiting state."""
    entered: dict[str, float] = {}
    admissions = []
    for experiment, team, to_state, at_s in transitions:
        if to_state in WAITING_STATES:
            entered[experiment] = at_s
        elif to_state == "ADMITTED" and experiment in entered:
            admissions.append(Admission(team, max(0.0, at_s - entered.pop(experiment))))
    return admissions


def admission_histogram(admissions: Sequence[Admission], teams: Sequence[str]) -> Metric:
    """The ``flywheel_admission_delay_seconds`` histogram, one series per team."""
    family = HistogramMetricFamily(
        "flywheel_admission_delay_seconds",
        "Time from entering the queue to admission.",
        labels=["team"],
    )
    for team in teams:
        delays = [a.delay_s for a in admissions if a.team == team]
        counts = [0] * (len(ADMISSION_DELAY_BUCKETS_S) + 1)
        for delay in delays:
            counts[bisect.bisect_left(ADMISSION_DELAY_BUCKETS_S, delay)] += 1
        cumulative, buckets = 0, []
        for bound, count in zip((*ADMISSION_DELAY_BUCKETS_S, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append((_bound(bound), float(cumulative)))
        family.add_metric([team], buckets, sum_value=sum(delays))
    return family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _team_gauge(name: str, text: str, values: dict[str, float]) -> Metric:
    family = GaugeMetricFamily(name, text, labels=["team"])
    for team, value in values.items():
        family.add_metric([team], float(value))
    return family


def _state_counts(session: Session) -> dict[tuple[str, str], int]:
    query = select(Experiment.team, Experiment.state, func.count()).group_by(
        Experiment.team, Experiment.state
    )
    return {(team, state): int(n) for team, state, n in session.execute(query)}


def _transitions(session: Session) -> list[tuple[str, str, str, float]]:
    query = (
        select(Transition.experiment_id, Experiment.team, Transition.to_state, Transition.at_s)
        .join(Experiment, Experiment.id == Transition.experiment_id)
        .where(Transition.to_state.in_(WAITING_STATES | {"ADMITTED"}))
        .order_by(Transition.at_s, Transition.id)
    )
    return [(e, t, s, float(at)) for e, t, s, at in session.execute(query)]


def _preemptions(session: Session) -> dict[str, int]:
    query = (
        select(Experiment.team, func.count())
        .select_from(Transition)
        .join(Experiment, Experiment.id == Transition.experiment_id)
        .where(Transition.to_state == "PREEMPTING")
        .group_by(Experiment.team)
    )
    return {team: int(n) for team, n in session.execute(query)}
