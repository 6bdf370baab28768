"""Where everything lives under a storage root: every storage path is built here, and only here.

Pure: strings in, strings out, no I/O. A root is a local directory or ``s3://bucket/prefix``::

    <root>/bundles/<job id>/                        code bundle of a job (manifest written last)
    <root>/checkpoints/<team>/<experiment>/         Ray Train runs and their checkpoints
    <root>/search/<team>/<experiment>/journal.log   Optuna journal, local roots (one file)
    <root>/search/<team>/<experiment>/journal/      Optuna journal, s3:// roots (one object a log)
    <root>/search/<team>/<experiment>/tune/         Ray Tune experiment state
    <root>/serving/routes.json                      the router's routes
    <root>/serving/feedback/<model>/                one JSON object per feedback record
    <root>/feedback-sets/<model>/<fingerprint>.parquet  production examples a retraining adds
    <root>/mlflow-artifacts/                        MLflow's artifact root (s3:// roots)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flywheel.errors import FlywheelError

#: URL schemes a storage root may have ("" is a local path).
SCHEMES = ("", "file", "s3")


@dataclass(frozen=True)
class RootUrl:
    """A storage root taken apart: scheme ("" for a local path), bucket (S3 only), the rest."""

    scheme: str
    bucket: str | None
    prefix: str

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"


def parse_root(root: str) -> RootUrl:
    """Check a storage root and take it apart; raise FlywheelError saying what is accepted."""
    if "://" not in root:
        return RootUrl("", None, root.rstrip("/") or "/")
    parts = urlsplit(root)
    if parts.scheme not in SCHEMES:
        raise FlywheelError(
            f"storage root {root!r} has the scheme {parts.scheme!r}; "
            "use a local directory or s3://bucket/prefix"
        )
    if parts.scheme == "s3" and not parts.netloc:
        raise FlywheelError(f"storage root {root!r} names no bucket; write s3://bucket/prefix")
    if parts.scheme == "file":
        return RootUrl("file", None, parts.path.rstrip("/") or "/")
    return RootUrl("s3", parts.netloc, parts.path.strip("/"))


def bucket_of(url: str) -> str | None:
    """The bucket an ``s3://`` URL is in; None for local paths."""
    return parse_root(url).bucket


def join(root: str, *parts: str) -> str:
    """``root`` and ``parts`` joined with ``/`` (local paths and URLs alike)."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p.strip("/"))])


@dataclass(frozen=True)
class StorageLayout:
    """The paths under one storage root."""

    root: str

    @property
    def is_s3(self) -> bool:
        return parse_root(self.root).is_s3

    def bundle(self, job_id: str) -> str:
        """A job's code bundle, kept so that the job can be resumed later."""
        return join(self.root, "bundles", job_id)

    def checkpoints(self, team: str, experiment: str) -> str:
        """Ray Train's storage path for an experiment's training runs."""
        return join(self.root, "checkpoints", team, experiment)

    def search(self, team: str, experiment: str) -> str:
        """Everything an experiment's search keeps."""
        return join(self.root, "search", team, experiment)

    def search_journal(self, team: str, experiment: str) -> str:
        """The Optuna journal: a file on local roots, a folder of log objects on S3."""
        name = "journal" if self.is_s3 else "journal.log"
        return join(self.search(team, experiment), name)

    def tune(self, team: str, experiment: str) -> str:
        """Ray Tune's storage path for an experiment's search stages."""
        return join(self.search(team, experiment), "tune")

    def serving_routes(self) -> str:
        return join(self.root, "serving", "routes.json")

    def feedback(self, model: str) -> str:
        return join(self.root, "serving", "feedback", model)

    def feedback_set(self, model: str, fingerprint: str) -> str:
        """The production examples (fed-back requests) one retraining of ``model`` adds."""
        return join(self.root, "feedback-sets", model, f"{fingerprint}.parquet")

    def mlflow_artifacts(self) -> str:
        """MLflow's artifact root when the storage root is in a bucket."""
        return join(self.root, "mlflow-artifacts")
