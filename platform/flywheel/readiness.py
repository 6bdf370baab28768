"""The production-readiness report: a model version scored against the ML Test Score rubric.

Breck, Cai, Nielsen, Salib and Sculley, "The ML Test Score: A Rubric for ML Production Readiness
and Technical Debt Reduction" (IEEE Big Data 2017): 28 tests in four groups of seven. Pure: the
caller (the control plane's :func:`flywheel.server.monitoring.score_readiness`) gathers
:class:`Evidence` from MLflow and the storage root; this module judges it.

Each test the platform can check on its own is ``passed`` or ``failed``, with its evidence; the
others are ``not verifiable`` (a person must judge them). As in the paper, a passed automated
test scores one point, a group's score is the sum of its tests, and the final score is the
lowest group score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flywheel.wire import ReadinessReport, ReadinessStatus, ReadinessTest, RubricGroup

#: Where the report is logged, in the run that trained the version.
READINESS_FILE = "readiness/report.json"

RUBRIC: tuple[tuple[str, RubricGroup, str], ...] = (
    ("data-1", "data", "Feature expectations are captured in a schema"),
    ("data-2", "data", "All features are beneficial"),
    ("data-3", "data", "No feature's cost is too much"),
    ("data-4", "data", "Features adhere to meta-level requirements"),
    ("data-5", "data", "The data pipeline has appropriate privacy controls"),
    ("data-6", "data", "New features can be added quickly"),
    ("data-7", "data", "All input feature code is tested"),
    ("model-1", "model", "Model specs are reviewed and submitted"),
    ("model-2", "model", "Offline and online metrics correlate"),
    ("model-3", "model", "All hyperparameters have been tuned"),
    ("model-4", "model", "The impact of model staleness is known"),
    ("model-5", "model", "A simpler model is not better"),
    ("model-6", "model", "Model quality is sufficient on important data slices"),
    ("model-7", "model", "The model is tested for considerations of inclusion"),
    ("infra-1", "infrastructure", "Training is reproducible"),
    ("infra-2", "infrastructure", "Model specs are unit tested"),
    ("infra-3", "infrastructure", "The ML pipeline is integration tested"),
    ("infra-4", "infrastructure", "Model quality is validated before serving"),
    ("infra-5", "infrastructure", "The model is debuggable"),
    ("infra-6", "infrastructure", "Models are canaried before serving"),
    ("infra-7", "infrastructure", "Serving models can be rolled back"),
    ("monitor-1", "monitoring", "Dependency changes result in notification"),
    ("monitor-2", "monitoring", "Data invariants hold for inputs"),
    ("monitor-3", "monitoring", "Training and serving are not skewed"),
    ("monitor-4", "monitoring", "Models are not too stale"),
    ("monitor-5", "monitoring", "Models are numerically stable"),
    ("monitor-6", "monitoring", "Computing performance has not regressed"),
    ("monitor-7", "monitoring", "Prediction quality has not regressed"),
)


@dataclass(frozen=True)
class Evidence:
    """What MLflow and the storage root know about one model version."""

    params: dict[str, str] = field(default_factory=dict)  # of the run that trained it
    metrics: dict[str, float] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)
    version_tags: dict[str, str] = field(default_factory=dict)
    challenger_modes: tuple[str, ...] = ()  # rollout modes the version went through
    logged_requests: int = 0  # in the request log
    feedback: int = 0
    monitor_checked: bool = False  # `flywheel monitor` judged the model at least once
    drift_alert: bool = False


Verdict = tuple[ReadinessStatus, str]


def readiness_report(model: str, version: str, evidence: Evidence) -> ReadinessReport:
    """Score ``evidence`` against the 28 tests."""
    tests = []
    for test_id, group, title in RUBRIC:
        check = _CHECKS.get(test_id)
        status, text = check(evidence) if check else ("not verifiable", "judged by a person")
        tests.append(ReadinessTest(id=test_id, group=group, title=title, status=status,
                                   evidence=text))  # fmt: skip
    groups = {g: float(sum(t.status == "passed" for t in tests if t.group == g))
              for g in ("data", "model", "infrastructure", "monitoring")}  # fmt: skip
    return ReadinessReport(
        model=model, version=version, tests=tests, group_scores=groups,
        score=min(groups.values()), verified=sum(t.status != "not verifiable" for t in tests),
    )  # fmt: skip


def _schema(e: Evidence) -> Verdict:
    snapshot, profile = e.run_tags.get("flywheel.snapshot"), e.version_tags.get("flywheel.profile")
    if snapshot and profile:
        return "passed", f"data snapshot {snapshot[:12]} and training profile {profile} logged"
    return "failed", "no data snapshot or no training profile logged for this version"


def _tuned(e: Evidence) -> Verdict:
    trials = e.params.get("search.trials")
    if trials:
        return "passed", f"hyperparameter search of {trials} trials"
    return "failed", "trained once with fixed hparams: add a search section"


def _baseline(e: Evidence) -> Verdict:
    if "baseline_val_accuracy" in e.metrics and "val_accuracy" in e.metrics:
        model, base = e.metrics["val_accuracy"], e.metrics["baseline_val_accuracy"]
        verdict: ReadinessStatus = "passed" if model > base else "failed"
        return verdict, f"val_accuracy {model:.4f} against baseline {base:.4f}"
    if "baseline_val_loss" in e.metrics and "val_loss" in e.metrics:
        model, base = e.metrics["val_loss"], e.metrics["baseline_val_loss"]
        verdict = "passed" if model < base else "failed"
        return verdict, f"val_loss {model:.4g} against baseline {base:.4g}"
    return "failed", "no baseline metric logged: enable checks.baseline"


def _reproducible(e: Evidence) -> Verdict:
    spec, data, seed = (e.run_tags.get("flywheel.spec_sha256"), e.params.get("data.sha256"),
                        e.params.get("data.seed"))  # fmt: skip
    if spec and data and seed is not None:
        return "passed", f"spec sha256 {spec[:12]}, data sha256 {data[:12]}, seed {seed}"
    return "failed", "spec hash, data fingerprint or seed not recorded"


def _overfit(e: Evidence) -> Verdict:
    final = e.metrics.get("overfit_final_loss")
    threshold = e.params.get("checks.overfit_one_batch.loss_threshold")
    if final is None or threshold is None:
        return "failed", "the overfit-one-batch check did not run"
    verdict: ReadinessStatus = "passed" if final < float(threshold) else "failed"
    return verdict, f"overfit one batch: loss {final:.4g} below {threshold}"


def _canaried(e: Evidence) -> Verdict:
    modes = sorted(set(e.challenger_modes) & {"canary", "shadow", "progressive"})
    if modes:
        return "passed", f"served as a challenger ({', '.join(modes)}) before promotion"
    return "failed", "never served as canary or shadow next to a champion"


def _drift_monitored(e: Evidence) -> Verdict:
    if not (e.monitor_checked and e.logged_requests):
        return "failed", "no request log or no monitor check yet"
    if e.drift_alert:
        return "failed", "a drift alert is active"
    return "passed", f"drift monitored over {e.logged_requests} logged requests, no alert"


def _latency_monitored(e: Evidence) -> Verdict:
    if e.logged_requests:
        return "passed", f"latency and errors of {e.logged_requests} logged requests monitored"
    return "failed", "no logged requests of this version"


def _feedback(e: Evidence) -> Verdict:
    if e.feedback:
        return "passed", f"{e.feedback} feedback records give online accuracy"
    return "failed", "no feedback for this version: report labels with flywheel feedback"


_CHECKS: dict[str, Callable[[Evidence], Verdict]] = {
    "data-1": _schema,
    "model-3": _tuned,
    "model-5": _baseline,
    "infra-1": _reproducible,
    "infra-2": _overfit,
    "infra-6": _canaried,
    "monitor-2": _drift_monitored,
    "monitor-3": _drift_monitored,
    "monitor-6": _latency_monitored,
    "monitor-7": _feedback,
}
