"""Plans: what will be submitted, derived purely from a spec and the settings.

Spec (what a user writes) -> JobPlan (what runs). No I/O here: the bundle is written by the
client and read back inside the job by :mod:`flywheel.runtime`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field

from flywheel.rollout import ServeTarget, serve_target
from flywheel.settings import Settings
from flywheel.specs.experiment import ExperimentSpec
from flywheel.storage_layout import StorageLayout, parse_root

#: Where the plan lives inside the job's working directory.
PLAN_PATH = PurePosixPath(".flywheel/plan.json")

#: Metadata keys attached to every Ray job flywheel submits.
META_TEAM = "flywheel.team"
META_EXPERIMENT = "flywheel.experiment"
META_SPEC_SHA256 = "flywheel.spec_sha256"
META_BUNDLE = "flywheel.bundle"


class FeedbackSet(BaseModel):
    """Production examples a retraining adds to its training data: fed-back requests, stored as
    Parquet (``request_id``, ``wrong``, features, ``y``) under the storage root."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(description="Registered model whose requests were fed back.")
    from_version: str = Field(description="The version the retraining starts from.")
    url: str = Field(description="The Parquet file (content-addressed by its fingerprint).")
    fingerprint: str = Field(description="sha256 of the rows (features, labels, request ids).")
    rows: int = Field(description="Training rows: each mistaken request repeated.")
    requests: int = Field(description="Distinct fed-back requests in it.")
    wrong: int = Field(description="Of those, requests the model had got wrong.")
    right: int = Field(description="Of those, requests the model had got right.")


class JobPlan(BaseModel):
    """Everything a job needs, written into its bundle as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(description="Ray job submission id.")
    spec: ExperimentSpec = Field(description="The validated experiment spec.")
    spec_file: str = Field(description="File name of the spec inside the bundle.")
    spec_sha256: str = Field(description="sha256 of the spec file's bytes.")
    storage_root: str = Field(description="Resolved storage root (local path or s3:// URL).")
    tracking_uri: str = Field(description="MLflow tracking URI the job records to.")
    entrypoint: str = Field(description="Command the Ray job runs.")
    metadata: dict[str, str] = Field(description="Ray job metadata.")
    env_vars: dict[str, str] = Field(description="Environment of the job driver and its workers.")
    resume: bool = Field(
        default=False, description="Continue the experiment's last search instead of a new one."
    )
    serve_target: ServeTarget | None = Field(
        default=None,
        description="Where the job's driver serves the model its spec's `serve` section asks "
        "for. None: the control plane serves it once the job has succeeded (on Kubernetes, "
        "where a RayJob's cluster is not the one that serves).",
    )
    feedback: FeedbackSet | None = Field(
        default=None, description="Production examples added to the training part (a retrain)."
    )


def spec_sha256(spec_bytes: bytes) -> str:
    """Fingerprint of a spec file."""
    return hashlib.sha256(spec_bytes).hexdigest()


def bundle_url(storage_root: str, job_id: str) -> str:
    """Where a job's code bundle is kept, so that the job can be resumed later."""
    return StorageLayout(storage_root).bundle(job_id)


def resumed_plan(plan: JobPlan, job_id: str) -> JobPlan:
    """The plan of a job that continues ``plan``'s search under a new id."""
    metadata = {**plan.metadata, META_BUNDLE: bundle_url(plan.storage_root, job_id)}
    return plan.model_copy(update={"job_id": job_id, "resume": True, "metadata": metadata})


def retrain_plan(plan: JobPlan, job_id: str, feedback: FeedbackSet) -> JobPlan:
    """The plan of a job that reruns ``plan``'s spec with ``feedback`` added to its training data.

    A fresh experiment, not a resume: a search in the spec runs again on the new data. Feedback
    of an earlier retraining is replaced, not added to: ``feedback`` holds every fed-back request.
    """
    metadata = {**plan.metadata, META_BUNDLE: bundle_url(plan.storage_root, job_id)}
    return plan.model_copy(
        update={"job_id": job_id, "resume": False, "metadata": metadata, "feedback": feedback}
    )


def new_job_id(spec: ExperimentSpec) -> str:
    """A unique, readable job id: ``<team>-<name>-<8 hex>``."""
    stem = re.sub(r"[^a-z0-9-]", "-", f"{spec.team}-{spec.name}")[:48]
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def spec_to_job_plan(
    spec: ExperimentSpec,
    spec_file: str,
    spec_bytes: bytes,
    settings: Settings,
    job_id: str,
    resume: bool = False,
) -> JobPlan:
    """Derive the job plan for ``spec``."""
    digest = spec_sha256(spec_bytes)
    storage_root = spec.storage.root or settings.storage_root
    parse_root(storage_root)  # a root of an unknown kind fails here, before anything is written
    return JobPlan(
        job_id=job_id,
        spec=spec,
        spec_file=spec_file,
        spec_sha256=digest,
        storage_root=storage_root,
        tracking_uri=settings.tracking_uri,
        entrypoint=f"python -m flywheel.runtime {PLAN_PATH}",
        metadata={
            META_TEAM: spec.team,
            META_EXPERIMENT: spec.name,
            META_SPEC_SHA256: digest,
            META_BUNDLE: bundle_url(storage_root, job_id),
        },
        env_vars={
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",  # plots are drawn headless
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(settings.train_report_poll_s),
        },
        resume=resume,
        serve_target=None if settings.backend == "kubernetes" else serve_target(settings),
    )
