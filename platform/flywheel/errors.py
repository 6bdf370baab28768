"""The one exception tree of flywheel.

Every failure a user can cause or fix is a :class:`FlywheelError`; its message says what
happened and what to do next. Anything else escaping flywheel is a bug.

    FlywheelError
    ├── SpecError            a spec file is invalid (carries every problem, each with file:line)
    ├── PlatformError        the embedded platform cannot start, stop or be reached
    │   └── PortInUseError   a port flywheel needs is taken
    ├── JobError             a job cannot be submitted, found or stopped
    │   ├── JobNotFoundError
    │   ├── DataNotFoundError    no run the caller may see recorded a data snapshot
    │   └── BundleError      an uploaded code bundle is refused (unsafe paths, unreadable)
    │       └── BundleTooLargeError
    ├── TeamNotFoundError    no such team in the teams file
    ├── AccessError          the control plane refused the caller's token
    │   ├── AuthenticationError   no token, or an unknown one (HTTP 401)
    │   └── PermissionDeniedError the token's team may not do this (HTTP 403)
    ├── CheckFailedError     a sanity check (baseline, overfit one batch) failed inside a job
    ├── StorageError         the storage root cannot be read or written (names bucket and operation)
    ├── ServeError           a model cannot be deployed, rolled out, found or queried
    │   ├── ServeInputError  the request itself is wrong (unknown model or version, bad JSON)
    │   └── ServeConflictError  another serving operation changed the document first
    └── K8sError             Kubernetes manifests cannot be rendered, or the API server refused
"""

from __future__ import annotations

from dataclasses import dataclass


class FlywheelError(Exception):
    """Base of every error flywheel raises on purpose."""


@dataclass(frozen=True)
class SpecProblem:
    """One problem found in a spec file, located as precisely as the YAML allows."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(FlywheelError):
    """A spec is invalid. ``problems`` lists every problem found, not only the first."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PlatformError(FlywheelError):
    """The embedded platform cannot start, stop or be reached."""


class PortInUseError(PlatformError):
    """A port the platform needs is already taken by another process."""

    def __init__(self, component: str, port: int, setting: str) -> None:
        self.component = component
        self.port = port
        self.setting = setting
        super().__init__(
            f"port {port} for {component} is already in use by another process; "
            f"stop that process or choose another port with {setting}=<port>"
        )


class JobError(FlywheelError):
    """A job cannot be submitted, found or stopped."""


class JobNotFoundError(JobError):
    """No job with the given id exists on the cluster."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}; `flywheel jobs` lists the jobs there are")


class DataNotFoundError(JobError):
    """No run of the experiment that the caller may see recorded a data snapshot."""


class BundleError(JobError):
    """An uploaded code bundle is refused: too large, unreadable, or a path leaves its folder.
    Nothing of it was written."""


class BundleTooLargeError(BundleError):
    """An uploaded code bundle is larger than the control plane accepts."""


class RetrainError(FlywheelError):
    """A model cannot be retrained as asked (no feedback, no spec to rerun); nothing was queued."""


class RetrainRunningError(JobError):
    """A retraining of the model is already waiting or running; ``experiment_id`` names it."""

    def __init__(self, experiment_id: str, state: str, model: str) -> None:
        self.experiment_id = experiment_id
        super().__init__(
            f"retraining {experiment_id} of {model!r} is {state}; wait for it or stop it with "
            f"`flywheel stop {experiment_id}`"
        )


class TeamNotFoundError(FlywheelError):
    """No team of that name in the teams file."""


class AccessError(FlywheelError):
    """The control plane refused the caller's token."""


class AuthenticationError(AccessError):
    """No token, or one the control plane does not know. Never carries the token itself."""


class PermissionDeniedError(AccessError):
    """The caller's team may not see or change this (another team's experiment, an admin call)."""


class CheckFailedError(FlywheelError):
    """A pre-training sanity check failed; the message says what usually causes it."""


class StorageError(FlywheelError):
    """The storage root cannot be read or written, after retrying what was worth retrying.

    The message names the operation, the bucket (or folder) and the object; it never carries
    credentials.
    """

    def __init__(self, operation: str, url: str, bucket: str | None, reason: str) -> None:
        self.operation = operation
        self.url = url
        self.bucket = bucket
        where = f"{url} in bucket {bucket!r}" if bucket else url
        super().__init__(f"cannot {operation} {where}: {reason}")


class ServeError(FlywheelError):
    """A model cannot be deployed, rolled out, found or queried."""


class ServeInputError(ServeError):
    """A serving request is wrong as given (unknown model or version, bad JSON); nothing changed."""


class ServeConflictError(ServeError):
    """Another serving operation changed the serving document first; this one changed nothing."""


class K8sError(FlywheelError):
    """Kubernetes manifests cannot be rendered as asked, or the API server refused a request."""
