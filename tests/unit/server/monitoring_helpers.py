"""A registered digits version with a training profile, and a request log of shifted traffic
with feedback: the input of a monitor check that finds drift."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from flywheel.profiles import PROFILE_FILE, build_profile
from flywheel.request_log import LoggedFeedback, LoggedRequest, RequestLogWriter
from flywheel.tracking import TAG_PROFILE


def drifted_version(
    uri: str, storage_root: str, model: str, artifacts: Path,
    version_tags: dict[str, str] | None = None, run_tags: dict[str, str] | None = None,
) -> str:  # fmt: skip
    """Version 1 of ``model``: a logistic regression on 1,200 digits with its profile; then 200
    requests of fainter digits (strokes at 60 %), each with feedback, in the request log."""
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    fitted = LogisticRegression(max_iter=300).fit(x[:1200], y[:1200])
    profile = build_profile(x[:1200], fitted.predict(x[:1200]), "classes", 10)
    client = MlflowClient(uri)
    experiment = client.create_experiment(f"runs-of-{model}", str(artifacts))
    run = client.create_run(experiment, tags=run_tags or {})
    client.log_dict(run.info.run_id, profile.model_dump(mode="json"), PROFILE_FILE)
    client.create_registered_model(model)
    tags = {TAG_PROFILE: PROFILE_FILE, **(version_tags or {})}
    version = client.create_model_version(
        model, f"runs:/{run.info.run_id}/model", run.info.run_id, tags=tags
    ).version
    log = RequestLogWriter(storage_root, 1.0, 24, flush_every_s=3600)
    faint = x[1200:1400] * 0.6
    for i, (row, label) in enumerate(zip(faint, y[1200:1400], strict=True)):
        prediction = int(fitted.predict(row[None])[0])
        log.log_request(LoggedRequest(f"r{i}", model, str(version), 1e9 + i, 3.0, True,
                                      row.tolist(), [64], prediction))  # fmt: skip
        log.log_feedback(LoggedFeedback(f"r{i}", model, str(version), 1e9 + i, int(label),
                                        prediction))  # fmt: skip
    log.close()
    return str(version)
