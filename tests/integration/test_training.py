"""Ray Train behaviour on the real local cluster: DDP equivalence. About a minute. (Resuming
after a killed worker: test_model_parallel.py, whose FSDP job resumes from a sharded checkpoint.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch
from mlflow import MlflowClient
from ray.util.state import list_actors

from flywheel.local import PlatformStatus
from flywheel.plans import spec_to_job_plan
from flywheel.runtime.task import load_task
from flywheel.runtime.train import fit, load_checkpoint_state
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec

from .helpers import REPO, wait_until

pytestmark = pytest.mark.integration

DIGITS = REPO / "experiments" / "digits"


@pytest.fixture(scope="module")
def ray_driver(embedded_platform: PlatformStatus, ray_env: None) -> Iterator[None]:
    """This test process as a Ray driver of the session cluster."""
    ray.init(address=str(embedded_platform.to_dict()["ray_gcs_address"]), log_to_driver=False)
    yield
    ray.shutdown()


def _digits_spec(num_workers: int, storage: Path) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "name": f"ddp-{num_workers}",
            "team": "testing",
            "task": {"module": "task"},
            "data": {"seed": 7},
            "train": {
                "epochs": 2,
                "batch_size": 64,
                "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
                "scaling": {"num_workers": num_workers},
            },
            "hparams": {"hidden": 32, "dropout": 0.0},
            "storage": {"root": str(storage)},
        }
    )


@pytest.mark.timeout(300)
def test_two_workers_at_b_match_one_worker_at_2b(
    ray_driver: None, platform_settings: Settings, tmp_path: Path
) -> None:
    """Global batch 64: 2 workers x 32 must reach the parameters of 1 worker x 64."""
    states = {}
    for workers in (1, 2):
        spec = _digits_spec(workers, tmp_path)
        plan = spec_to_job_plan(spec, "train.yaml", b"", platform_settings, f"eq-{workers}")
        result = fit(plan, run_id=None, task_dir=DIGITS)
        assert result.checkpoint is not None
        states[workers] = load_checkpoint_state(result.checkpoint)["model"]
    assert states[1].keys() == states[2].keys()
    for name, single in states[1].items():
        torch.testing.assert_close(states[2][name], single, rtol=1e-4, atol=1e-5, msg=name)
    torch.manual_seed(7)
    initial = load_task(DIGITS, "task").module.build_model({"hidden": 32}).state_dict()
    assert not all(torch.allclose(initial[k], states[1][k]) for k in initial), "nothing was trained"


def _wait_for_epoch(mlflow: MlflowClient, run_id: str, epoch: int, timeout_s: float = 180) -> None:
    def reached() -> bool:
        return any(m.step >= epoch for m in mlflow.get_metric_history(run_id, "val_loss"))

    wait_until(reached, timeout_s, f"epoch {epoch}", every_s=0.2)


def _a_training_worker_pid(settings: Settings) -> int:
    actors = list_actors(
        address=settings.jobs_url,
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
    )
    assert actors, "no live training worker"
    return int(actors[-1].pid)
