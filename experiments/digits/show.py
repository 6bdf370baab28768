"""After `make demo`: print the latest digits run, its registered model, and a few predictions
from that model loaded back out of the MLflow Model Registry.

Run: .venv/bin/python experiments/digits/show.py
"""

from __future__ import annotations

import mlflow.pytorch
import torch
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from flywheel.settings import Settings
from flywheel.specs import load_spec

SPEC = "experiments/digits/train.yaml"


def main() -> None:
    settings = Settings()
    mlflow.set_tracking_uri(settings.tracking_uri)
    spec = load_spec(SPEC)
    client = MlflowClient(settings.tracking_uri)
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
    version = versions[0].version
    print(f"registered model: {spec.registered_model} version {version}")
    model = mlflow.pytorch.load_model(f"models:/{spec.registered_model}/{version}")
    digits = load_digits()
    images = torch.tensor(digits.data[:8] / 16.0, dtype=torch.float32)
    predicted = model(images).argmax(dim=1).tolist()
    print(f"predicted {predicted} for true labels {digits.target[:8].tolist()}")
    print(
        f"MLflow UI:     {settings.tracking_uri}/#/experiments/"
        f"{experiment.experiment_id}/runs/{run.info.run_id}"
    )
    print(f"Ray dashboard: {settings.jobs_url}  (token: {settings.ray_auth_token_path})")
    print("Stop the platform with: .venv/bin/flywheel down")


if __name__ == "__main__":
    main()
