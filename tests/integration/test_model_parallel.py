"""Model-parallel training (fsdp, tp, fsdp+tp) on the real local cluster: each strategy on 2 CPU
workers (gloo) against one process, a sharded checkpoint round trip, and resuming after a killed
worker. About 3 minutes in all on 2 cores: 6 short Ray Train runs of a tiny character LM, and
one submitted job.

Tolerance: the runs are fp32 and differ only in the order of floating-point sums (gradients
all-reduced or reduce-scattered over two halves of the batch, tensor-parallel partial products
all-reduced), so after a few dozen SGD steps losses agree to rtol 1e-5 and parameters to
rtol 1e-4 / atol 1e-5, the tolerance of the DDP test. A wrong split (a shard trained twice, a
missing gradient reduction, a batch counted on both tensor-parallel ranks) moves them by more
than 1e-2.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pytorch
import pytest
import ray
import torch
from mlflow import MlflowClient
from torch.distributed.tensor import DTensor

from flywheel.client import Client
from flywheel.local import PlatformStatus
from flywheel.plans import spec_to_job_plan
from flywheel.runtime.train import fit, load_checkpoint_state
from flywheel.settings import Settings
from flywheel.specs import ExperimentSpec
from flywheel.tracking import TAG_RESUMED_FROM_EPOCH, TAG_TRIAL_STATE

from .helpers import REPO, run_of_job, trial_runs
from .test_training import _a_training_worker_pid, _wait_for_epoch

pytestmark = pytest.mark.integration

CHARLM = REPO / "experiments" / "charlm"
#: A tiny model on a few thousand characters: 24 steps of 16 sequences an epoch.
HPARAMS = {"seq_len": 16, "corpus_chars": 7_000, "dim": 32, "heads": 4, "layers": 2}
STRATEGIES = {
    "fsdp": None,
    "tp": None,
    "fsdp+tp": {"dp": 1, "tp": 2},  # both code paths: TP over 2 ranks, FSDP over a dp dim of 1
}  # DDP against one process: test_training.py


@dataclass(frozen=True)
class Trained:
    train_loss: list[float]
    val_loss: list[float]
    state: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def ray_driver(embedded_platform: PlatformStatus, ray_env: None) -> Iterator[None]:
    """This test process as a Ray driver of the session cluster."""
    ray.init(address=str(embedded_platform.to_dict()["ray_gcs_address"]), log_to_driver=False)
    yield
    ray.shutdown()


def charlm_spec(
    strategy: str, workers: int, storage: Path, mesh: dict[str, int] | None = None, **train: Any
) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "name": f"charlm-{strategy.replace('+', '-')}-{workers}",
            "team": "testing",
            "task": {"module": "task", "kind": "language_model"},
            "data": {"seed": 3, "validation_split": 0.1},
            "train": {
                "epochs": 2,
                "batch_size": 16,
                "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                "checkpoint_every_epochs": 1,
                "strategy": strategy,
                "mesh": mesh,
                "scaling": {"num_workers": workers},
                **train,
            },
            "hparams": HPARAMS,
            "storage": {"root": str(storage)},
        }
    )


def train(
    spec: ExperimentSpec, settings: Settings, run: str = "run", **fit_args: Any
) -> tuple[Trained, Any]:
    """Train with ``fit``; ``run`` names the Ray Train run (a name seen before resumes it)."""
    plan = spec_to_job_plan(spec, "train.yaml", b"", settings, f"{spec.name}-{run}")
    result = fit(plan, run_id=None, task_dir=CHARLM, **fit_args)
    assert result.checkpoint is not None
    history = result.metrics_dataframe
    trained = Trained(
        list(history["train_loss"]),
        list(history["val_loss"]),
        load_checkpoint_state(result.checkpoint)["model"],
    )
    return trained, result


@pytest.fixture(scope="module")
def one_process(
    ray_driver: None, platform_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Trained:
    """The reference: one worker, no sharding, the same global batch."""
    return train(charlm_spec("ddp", 1, tmp_path_factory.mktemp("one")), platform_settings)[0]


@pytest.fixture(scope="module")
def two_workers(
    ray_driver: None, platform_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Trained]:
    """Runs on 2 workers by strategy, trained on first use and shared by the tests."""

    class Runs(dict[str, Trained]):
        def __missing__(self, strategy: str) -> Trained:
            storage = tmp_path_factory.mktemp("two")
            spec = charlm_spec(strategy, 2, storage, STRATEGIES[strategy])
            self[strategy] = train(spec, platform_settings)[0]
            return self[strategy]

    return Runs()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_workers_match_one_process(
    strategy: str, one_process: Trained, two_workers: dict[str, Trained]
) -> None:
    two = two_workers[strategy]
    assert len(two.train_loss) == 2
    torch.testing.assert_close(two.train_loss, one_process.train_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(two.val_loss, one_process.val_loss, rtol=1e-5, atol=0)
    assert two.state.keys() == one_process.state.keys()
    for name, single in one_process.state.items():
        assert two.state[name].shape == single.shape, name
        torch.testing.assert_close(two.state[name], single, rtol=1e-4, atol=1e-5, msg=name)
    assert two.train_loss[1] < two.train_loss[0], "nothing was learnt"


@pytest.mark.timeout(300)
def test_sharded_checkpoint_round_trip(
    two_workers: dict[str, Trained], platform_settings: Settings, tmp_path: Path
) -> None:
    """Stopping after epoch 1 and resuming from its sharded checkpoint (model and optimizer
    state loaded into a fresh sharded model) ends where an uninterrupted run ends."""
    mesh = STRATEGIES["fsdp+tp"]
    straight = two_workers["fsdp+tp"]
    _, first = train(charlm_spec("fsdp+tp", 2, tmp_path / "b", mesh, epochs=1), platform_settings)
    directory = Path(first.checkpoint.path)
    assert {".metadata", "__0_0.distcp", "__1_0.distcp", "flywheel.json"} <= {
        p.name for p in directory.iterdir()
    }, "the checkpoint lacks a rank's shard"
    resumed, _ = train(
        charlm_spec("fsdp+tp", 2, tmp_path / "b", mesh), platform_settings, run="resumed",
        resume_from=first.checkpoint,
    )  # fmt: skip
    assert len(resumed.train_loss) == 1, "the resumed run trained epoch 1 again"
    torch.testing.assert_close(resumed.train_loss[-1], straight.train_loss[-1], rtol=1e-6, atol=0)
    for name, expected in straight.state.items():
        torch.testing.assert_close(resumed.state[name], expected, rtol=1e-6, atol=1e-7, msg=name)


SLOW_SPEC = """\
name: slow-charlm
team: testing
task: {module: task, kind: language_model}
train:
  epochs: 6
  batch_size: 16
  optimizer: {name: sgd, lr: 0.3}
  checkpoint_every_epochs: 1
  max_failures: 2
  strategy: fsdp
  scaling: {num_workers: 2}
hparams: {seq_len: 16, corpus_chars: 7000, dim: 32, heads: 4, layers: 2, sleep_s: 0.05}
checks:
  baseline: true
  overfit_one_batch: {enabled: false}
tracking:
  registered_model: slow-charlm-e2e
"""


@pytest.mark.timeout(400)
def test_a_killed_fsdp_worker_resumes_from_the_sharded_checkpoint(
    ray_driver: None, platform_settings: Settings, tmp_path: Path
) -> None:
    spec = tmp_path / "slow" / "train.yaml"
    spec.parent.mkdir()
    (spec.parent / "task.py").write_text(
        (CHARLM / "task.py").read_text() + SLOW_FORWARD, encoding="utf-8"
    )
    spec.write_text(SLOW_SPEC)
    client = Client(platform_settings)
    job_id = client.submit(spec)
    run = run_of_job(platform_settings.tracking_uri, job_id)
    mlflow = MlflowClient(platform_settings.tracking_uri)
    _wait_for_epoch(mlflow, run.info.run_id, epoch=3)  # epoch 2's checkpoint was reported

    os.kill(_a_training_worker_pid(platform_settings), signal.SIGKILL)

    final = list(client.follow(job_id, poll_s=1))[-1].job
    assert final.state == "SUCCEEDED", final.message
    finished = mlflow.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.params["train.strategy"] == "fsdp"
    assert finished.data.params["train.mesh_shape"] == "dp=2,tp=1"
    assert "baseline_val_accuracy" in finished.data.metrics
    resumed = int(finished.data.tags[TAG_RESUMED_FROM_EPOCH])
    assert 1 <= resumed < 6
    steps = [m.step for m in mlflow.get_metric_history(run.info.run_id, "val_loss")]
    assert sorted(set(steps)) == list(range(1, 7))
    assert steps.count(1) == 1, "epoch 1 ran again: training restarted from scratch"
    _assert_registered_model_is_unsharded(platform_settings, run.info.run_id)


def _assert_registered_model_is_unsharded(settings: Settings, run_id: str) -> None:
    """The sharded checkpoint was gathered into a plain model, logged and registered."""
    [version] = MlflowClient(settings.tracking_uri).search_model_versions("name='slow-charlm-e2e'")
    assert version.run_id == run_id
    mlflow.set_tracking_uri(settings.tracking_uri)
    model = mlflow.pytorch.load_model(f"models:/slow-charlm-e2e/{version.version}")
    assert not any(isinstance(p, DTensor) for p in model.parameters())
    assert model(torch.zeros(3, 16, dtype=torch.long)).shape == (3, 16, 98)


#: Appended to a copy of the charlm task: the model sleeps in training forward passes, so that
#: the test can kill a worker mid-training.
SLOW_FORWARD = """

import time as _time

_build = build_model
_sleep_s = 0.0


def build_model(hparams):
    global _sleep_s
    _sleep_s = float(hparams.get("sleep_s", 0))
    model = _build(hparams)
    model.register_forward_pre_hook(_sleep_in_training)
    return model


def _sleep_in_training(module, args):
    _time.sleep(_sleep_s * module.training)
"""


FSDP_TRIALS_SPEC = """\
name: fsdp-trials
team: testing
task: {module: task, kind: language_model}
train:
  epochs: 1
  batch_size: 16
  optimizer: {name: sgd, lr: 0.1}
  strategy: fsdp
  scaling: {num_workers: 2}
hparams: {seq_len: 16, corpus_chars: 7000, dim: 32, heads: 4, layers: 2, marker_dir: MARKERS}
checks:
  baseline: false
  overfit_one_batch: {enabled: false}
search:
  metric: val_loss
  space:
    train.optimizer.lr: {type: loguniform, low: 1.0e-2, high: 3.0e-1}
  trial_workers: 2
  stages:
    - {name: only, sampler: random, trials: 1, max_concurrent: 1, seed: 0}
tracking:
  register_model: false
"""

#: Appended to a copy of the charlm task: every call of the fsdp_units hook (made only when a
#: worker shards its model) leaves a file naming the process and the world it trained in.
MARK_FSDP_UNITS = """

import os as _os
import pathlib as _pathlib

import torch.distributed as _dist

_units = fsdp_units
_marker_dir = None


def build_model(hparams, _build=build_model):
    global _marker_dir
    _marker_dir = hparams.get("marker_dir")
    return _build(hparams)


def fsdp_units(model):
    world = _dist.get_world_size() if _dist.is_initialized() else 1
    _pathlib.Path(_marker_dir, f"{_os.getpid()}-world{world}").touch()
    return _units(model)
"""


@pytest.mark.timeout(400)
def test_search_trials_train_with_an_fsdp_mesh(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path: Path
) -> None:
    """A search whose trial shards the model over 2 workers, as does the final training (about
    a minute here)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    folder = tmp_path / "fsdp-trials"
    folder.mkdir()
    (folder / "task.py").write_text(
        (CHARLM / "task.py").read_text() + MARK_FSDP_UNITS, encoding="utf-8"
    )
    spec = folder / "search.yaml"
    spec.write_text(FSDP_TRIALS_SPEC.replace("MARKERS", str(markers)))
    client = Client(platform_settings)
    job_id = client.submit(spec)

    final = list(client.follow(job_id, poll_s=1))[-1].job

    assert final.state == "SUCCEEDED", final.message
    parent = run_of_job(platform_settings.tracking_uri, job_id)
    trials = trial_runs(platform_settings.tracking_uri, parent)
    assert [r.data.tags[TAG_TRIAL_STATE] for r in trials] == ["completed"]
    sharded = [p.name for p in markers.iterdir()]
    assert all(name.endswith("-world2") for name in sharded), sharded
    # The trial's 2 workers, then the final retraining's 2 workers: each shards its model.
    assert len(sharded) >= 4, sharded
