"""Experiment spec -> RayJob: every example renders to a valid, queued, checkpoint-friendly job."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.errors import K8sError
from flywheel.k8s.checks import check_manifests
from flywheel.k8s.kueue import teams_to_objects
from flywheel.k8s.manifests import experiment_to_rayjob
from flywheel.k8s.objects import to_yaml
from flywheel.k8s.rayjob import MAX_RAYJOB_NAME_CHARS, K8sTarget, rayjob_name
from flywheel.settings import Settings
from flywheel.specs.experiment import ExperimentSpec
from flywheel.specs.loading import load_spec, parse_model
from flywheel.specs.teams import TeamsSpec, load_teams

from .conftest import REPO, Validate

EXAMPLES = sorted((REPO / "experiments").glob("*/*.yaml"))
TEAMS = REPO / "cluster" / "teams.yaml"
JOB_ID = "vision-digits-0123abcd"

GPU_SPEC = """\
name: big
team: language
task: {module: task}
train:
  batch_size: 64
  scaling: {num_workers: 4, use_gpu: true, resources_per_worker: {CPU: 3, GPU: 1}}
storage: {root: "s3://team-bucket/runs"}
"""


def render(spec: ExperimentSpec, teams: TeamsSpec | None = None, **target: Any) -> dict[str, Any]:
    teams = teams or load_teams(TEAMS)
    settings = Settings(home=Path("/nonexistent"))
    rayjob = experiment_to_rayjob(
        spec, "spec.yaml", b"name: x\n", teams, K8sTarget(**target), settings, JOB_ID
    )
    return rayjob.to_manifest()


def pods(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = manifest["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [g["template"] for g in groups]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_renders_to_a_valid_rayjob(path: Path, validate: Validate) -> None:
    manifest = render(load_spec(path))
    validate(manifest)
    teams = [o.to_manifest() for o in teams_to_objects(load_teams(TEAMS))]
    assert check_manifests([manifest], teams) == []


def test_the_examples_are_found() -> None:
    assert len(EXAMPLES) >= 6


def test_the_job_is_queued_in_its_team_namespace_with_its_priority() -> None:
    manifest = render(load_spec(REPO / "experiments/digits/train.yaml"))
    assert manifest["metadata"]["namespace"] == "flywheel-team-vision"
    labels = manifest["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "vision"
    assert labels["kueue.x-k8s.io/priority-class"] == "normal"
    assert labels["flywheel.dev/job-id"] == JOB_ID
    spec = manifest["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["suspend"] is True
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert spec["jobId"] == JOB_ID
    assert spec["entrypoint"] == "python -m flywheel.runtime .flywheel/plan.json"


def test_the_code_bundle_on_s3_is_the_working_dir() -> None:
    manifest = render(load_spec(REPO / "experiments/digits/train.yaml"), storage_root="s3://bkt/p")
    runtime_env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == f"s3://bkt/p/bundles/{JOB_ID}.zip"
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == K8sTarget().tracking_uri


def test_a_spec_s3_root_is_kept() -> None:
    manifest = render(parse_model(GPU_SPEC, "big.yaml", ExperimentSpec))
    runtime_env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == f"s3://team-bucket/runs/bundles/{JOB_ID}.zip"


def test_gpu_workers_request_gpus_and_tolerate_gpu_nodes(validate: Validate) -> None:
    manifest = render(parse_model(GPU_SPEC, "big.yaml", ExperimentSpec))
    validate(manifest)
    (group,) = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["groupName"] == "gpu-workers"
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (4, 4, 4)
    assert group["rayStartParams"] == {"num-cpus": "3", "num-gpus": "1"}
    pod = group["template"]["spec"]
    requests = pod["containers"][0]["resources"]["requests"]
    assert requests == {"cpu": "3", "memory": "12Gi", "nvidia.com/gpu": "1"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_search_concurrency_sizes_the_worker_group() -> None:
    manifest = render(load_spec(REPO / "experiments/digits/search.yaml"))
    (group,) = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["groupName"] == "cpu-workers"
    assert group["replicas"] == 2  # two trials at once, one worker each; the final training: 2


def test_every_pod_gets_the_grace_period_to_checkpoint() -> None:
    manifest = render(load_spec(REPO / "experiments/digits/train.yaml"), grace_period_s=300)
    assert [p["spec"]["terminationGracePeriodSeconds"] for p in pods(manifest)] == [300, 300]


def test_an_unknown_team_is_an_error_that_names_the_known_ones() -> None:
    spec = load_spec(REPO / "experiments/digits/train.yaml").model_copy(update={"team": "audio"})
    with pytest.raises(K8sError, match=r"team .audio. is not in the teams file.*vision, language"):
        render(spec)


def test_the_team_priority_class_is_the_label() -> None:
    teams = parse_model(
        textwrap.dedent("""\
            teams:
              - {name: vision, priority: high, quota: {cpu: 4}}
        """),
        "teams.yaml",
        TeamsSpec,
    )
    manifest = render(load_spec(REPO / "experiments/digits/train.yaml"), teams)
    assert manifest["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"


def test_a_long_job_id_is_shortened_keeping_its_random_suffix() -> None:
    job_id = "language-a-very-long-experiment-name-for-a-model-1234abcd"
    name = rayjob_name(job_id)
    assert len(name) == MAX_RAYJOB_NAME_CHARS
    assert name.endswith("-1234abcd")
    assert name.startswith("language-a-very-long-experiment-")
    assert rayjob_name(JOB_ID) == JOB_ID


def test_an_evicted_head_stops_the_driver_with_sigterm_within_the_grace_period() -> None:
    manifest = render(load_spec(REPO / "experiments/digits/train.yaml"), grace_period_s=300)
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    stop = head["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert stop == ["ray", "job", "stop", "--address", "http://127.0.0.1:8265", JOB_ID]
    runtime_env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])
    wait_s = int(runtime_env["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"])
    assert wait_s == 290 < head["terminationGracePeriodSeconds"]


def test_the_submitter_pod_asks_for_what_the_namespace_quota_counts() -> None:
    manifest = render(load_spec(REPO / "experiments/digits/train.yaml"))
    submitter = manifest["spec"]["submitterPodTemplate"]["spec"]
    assert submitter["restartPolicy"] == "Never"
    (container,) = submitter["containers"]
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert "command" not in container  # KubeRay writes `ray job submit ...`


def test_the_yaml_reads_back_as_the_objects_with_the_runtime_env_as_a_block() -> None:
    spec = load_spec(REPO / "experiments/digits/train.yaml")
    job = experiment_to_rayjob(
        spec, "t.yaml", b"", load_teams(TEAMS), K8sTarget(), Settings(home=Path("/x")), JOB_ID
    )
    text = to_yaml([job, job])
    assert "  runtimeEnvYAML: |\n    env_vars:\n" in text
    assert list(yaml.safe_load_all(text)) == [job.to_manifest()] * 2


def test_a_stage_with_fewer_trials_than_its_concurrency_asks_only_for_those() -> None:
    spec = load_spec(REPO / "experiments/digits/search.yaml")
    assert spec.search is not None
    stages = [
        s.model_copy(update={"trials": 1, "max_concurrent": 8}) for s in spec.search.stages or []
    ]
    search = spec.search.model_copy(update={"stages": stages, "trial_workers": 3})
    manifest = render(spec.model_copy(update={"search": search}))
    (group,) = manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == 3  # one trial at a time, of 3 workers; the final training: 2
