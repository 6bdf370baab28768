"""Serving what a finished job registered, where the job cannot serve it itself.

On Kubernetes a RayJob runs on a Ray cluster of its own, while served models run on the shared
RayService that only the control plane changes, so its plan carries no serving target
(``JobPlan.serve_target`` is None). Its driver registers the version and tags it with its serve
settings; the queue driver calls :class:`ServeFinished` when the job has succeeded, before it
records the success. The version becomes champion of a model not served yet, else challenger
in the spec's rollout mode; a progressive rollout is then advanced by the control plane's
rollout loop (:func:`progressive_models`). Serving twice is harmless: a version the serving
document already serves is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flywheel.errors import FlywheelError, PlatformError, ServeConflictError, StorageError
from flywheel.plans import JobPlan
from flywheel.server.serving import ServingOperations
from flywheel.tracking import version_registered_by_job


@dataclass(frozen=True)
class ServeFinished:
    """Serves the version a succeeded job registered when its plan left serving to the control
    plane; returns what was done, in a few words, or None when there was nothing to do.

    Raises PlatformError when it should be tried again later (MLflow or the serving document
    unreachable, or another serving operation on the model won the race).
    """

    tracking_uri: str
    operations: ServingOperations

    def __call__(self, plan: JobPlan, job_id: str) -> str | None:
        spec = plan.spec
        if spec.serve is None or not spec.serve.enabled or plan.serve_target is not None:
            return None
        if not spec.tracking.register_model:
            return None
        model = spec.registered_model
        version = version_registered_by_job(self.tracking_uri, job_id, model)  # PlatformError
        if version is None:
            return f"it registered no version of {model}; nothing was served"
        try:
            served = self.operations.document().models.get(model)
            if served is not None and version in served.versions:
                return f"{model} version {version} serves"
            result = self.operations.serve_new_version(model, version, spec.serve)
        except (ServeConflictError, PlatformError, StorageError) as e:
            raise PlatformError(f"serving {model} version {version} waits: {e}") from e
        except FlywheelError as e:
            return f"serving {model} version {version} failed: {e}"
        role = "champion" if result.champion == version else "challenger"
        return f"{model} version {version} serves as {role}"


def progressive_models(operations: ServingOperations) -> Callable[[], list[str]]:
    """The served models whose challenger is in a progressive rollout, for the rollout loop."""

    def listed() -> list[str]:
        document = operations.document()
        return [
            name
            for name, served in sorted(document.models.items())
            if served.challenger is not None and served.challenger.progressive is not None
        ]

    return listed
