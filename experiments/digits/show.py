"""After `make demo`: print the latest digits run and its registered model, then query the served
model over HTTP through flywheel's gateway (Open Inference Protocol v2).

Run: .venv/bin/python experiments/digits/show.py
"""

from __future__ import annotations

import os

import numpy as np
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from flywheel import Client
from flywheel.settings import Settings
from flywheel.specs import load_spec

SPEC = "experiments/digits/train.yaml"
ROWS = 8


def mlflow_client(flywheel: Client) -> MlflowClient:
    """MLflow as the token's team (the admin token: the admin), the identity that
    `flywheel mlflow env` prints."""
    access = flywheel.mlflow_env()
    if access.username and access.password:
        os.environ["MLFLOW_TRACKING_USERNAME"] = access.username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = access.password
    return MlflowClient(access.tracking_uri)


def main() -> None:
    settings = Settings()
    spec = load_spec(SPEC)
    flywheel = Client(settings)
    cluster = flywheel.cluster()  # where this cluster tracks runs and serves models
    client = mlflow_client(flywheel)
    experiment = client.get_experiment_by_name(spec.mlflow_experiment)
    if experiment is None:
        raise SystemExit(f"no MLflow experiment {spec.mlflow_experiment!r}: submit {SPEC} first")
    [run] = client.search_runs(
        [experiment.experiment_id],
        "attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    metrics = run.data.metrics
    print(
        f"run {run.info.run_name}: val_accuracy {metrics['val_accuracy']:.4f} "
        f"(baseline {metrics['baseline_val_accuracy']:.4f}), val_loss {metrics['val_loss']:.4f}"
    )
    versions = client.search_model_versions(
        f"name='{spec.registered_model}' and run_id='{run.info.run_id}'"
    )
    print(f"registered model: {spec.registered_model} version {versions[0].version}")
    digits = load_digits()
    images = (digits.data[:ROWS] / 16.0).astype(np.float32)
    request = {
        "id": "demo",
        "inputs": [
            {"name": "input-0", "shape": [ROWS, 64], "datatype": "FP32",
             "data": images.reshape(-1).tolist()}
        ],
    }  # fmt: skip
    answer = flywheel.predict(spec.registered_model, request)
    [output] = answer.outputs
    predicted = np.asarray(output.data).reshape(output.shape).argmax(axis=1).tolist()
    print(
        f"POST {cluster.serve_url}/v2/models/{spec.registered_model}/infer -> version "
        f"{answer.model_version} predicted {predicted} for true labels "
        f"{digits.target[:ROWS].tolist()}"
    )
    print(
        f"MLflow UI:     {cluster.tracking_uri}/#/experiments/"
        f"{experiment.experiment_id}/runs/{run.info.run_id}"
    )
    print(f"Ray dashboard: {settings.jobs_url}  (token: {settings.ray_auth_token_path})")
    print(
        f"Model gateway: {cluster.serve_url}/v2/models/{spec.registered_model}  (flywheel models)"
    )
    print("Stop the platform with: .venv/bin/flywheel down")


if __name__ == "__main__":
    main()
