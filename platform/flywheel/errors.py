"""The one exception tree of flywheel.

Every failure a user can cause or fix is a :class:`FlywheelError`; its message says what
happened and what to do next. Anything else escaping flywheel is a bug.

    FlywheelError
    ├── SpecError            a spec file is invalid (carries every problem, each with file:line)
    ├── PlatformError        the embedded platform cannot start, stop or be reached
    │   └── PortInUseError   a port flywheel needs is taken
    ├── JobError             a job cannot be submitted, found or stopped
    │   └── JobNotFoundError
    ├── CheckFailedError     a sanity check (baseline, overfit one batch) failed inside a job
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


class CheckFailedError(FlywheelError):
    """A pre-training sanity check failed; the message says what usually causes it."""


class ServeError(FlywheelError):
    """A model cannot be deployed, rolled out, found or queried."""


class ServeInputError(ServeError):
    """A serving request is wrong as given (unknown model or version, bad JSON); nothing changed."""


class ServeConflictError(ServeError):
    """Another serving operation changed the serving document first; this one changed nothing."""


class K8sError(FlywheelError):
    """Kubernetes manifests cannot be rendered as asked, or the API server refused a request."""
