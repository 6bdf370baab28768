"""Teams file -> Kueue objects, namespaces and quotas: valid against the real schemas, and right."""

from __future__ import annotations

import textwrap

import pytest

from flywheel.k8s.kueue import teams_to_objects
from flywheel.k8s.manifests import teams_to_checked_objects
from flywheel.k8s.objects import ClusterQueue, K8sObject, cpu_quantity, memory_quantity
from flywheel.specs.loading import parse_model
from flywheel.specs.teams import TeamsSpec, load_teams

from .conftest import REPO, Validate

SEVERAL = """\
priority_classes:
  - {name: batch, value: 10}
  - {name: urgent, value: 100000, description: On call.}
teams:
  - name: vision
    priority: urgent
    cohort: research
    quota: {cpu: 16, gpu: 4, memory_gib: 64}
    borrowing_limit: {cpu: 8, gpu: 2, memory_gib: 32}
    lending_limit: {cpu: 0.5, gpu: 1, memory_gib: 1.5}
    fair_share_weight: 2.5
  - name: language
    priority: batch
    cohort: research
    quota: {cpu: 0.25, memory_gib: 0.5}
  - name: speech
    priority: batch
    cohort: other
    quota: {gpu: 8}
"""


def several() -> TeamsSpec:
    return parse_model(textwrap.dedent(SEVERAL), "teams.yaml", TeamsSpec)


def by_kind(objects: list[K8sObject], kind: str) -> list[dict[str, object]]:
    return [o.to_manifest() for o in objects if o.kind == kind]


@pytest.mark.parametrize("source", ["cluster/teams.yaml", "several"])
def test_every_object_validates_strictly(source: str, validate: Validate) -> None:
    teams = several() if source == "several" else load_teams(REPO / source)
    objects = teams_to_checked_objects(teams)
    assert objects
    for obj in objects:
        validate(obj.to_manifest())


def test_the_kinds_come_in_apply_order() -> None:
    kinds = [o.kind for o in teams_to_objects(several())]
    assert kinds[:3] == ["ResourceFlavor", "WorkloadPriorityClass", "WorkloadPriorityClass"]
    assert kinds[3:] == ["Namespace", "ClusterQueue", "LocalQueue", "ResourceQuota"] * 3


def test_a_cluster_queue_holds_the_team_quota_in_its_cohort() -> None:
    queues = [o for o in teams_to_objects(several()) if isinstance(o, ClusterQueue)]
    vision = queues[0].to_manifest()
    assert vision["metadata"]["name"] == "flywheel-vision"
    spec = vision["spec"]
    assert spec["cohortName"] == "research"
    assert spec["fairSharing"] == {"weight": "2500m"}
    assert spec["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "flywheel-team-vision"}
    }
    assert spec["preemption"] == {
        "reclaimWithinCohort": "Any",
        "borrowWithinCohort": {"policy": "LowerPriority"},
        "withinClusterQueue": "LowerPriority",
    }
    (group,) = spec["resourceGroups"]
    assert group["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    assert group["flavors"][0]["resources"] == [
        {"name": "cpu", "nominalQuota": "16", "borrowingLimit": "8", "lendingLimit": "500m"},
        {"name": "memory", "nominalQuota": "64Gi", "borrowingLimit": "32Gi",
         "lendingLimit": "1536Mi"},
        {"name": "nvidia.com/gpu", "nominalQuota": "4", "borrowingLimit": "2",
         "lendingLimit": "1"},
    ]  # fmt: skip


def test_a_team_without_a_lending_limit_lends_everything() -> None:
    queues = by_kind(teams_to_objects(several()), "ClusterQueue")
    resources = queues[1]["spec"]["resourceGroups"][0]["flavors"][0]["resources"]  # type: ignore[index]
    assert all("lendingLimit" not in r for r in resources)
    assert resources[0] == {"name": "cpu", "nominalQuota": "250m", "borrowingLimit": "0"}


def test_the_namespace_quota_is_the_quota_plus_borrowing() -> None:
    quotas = by_kind(teams_to_objects(several()), "ResourceQuota")
    assert quotas[0]["metadata"] == {
        "name": "flywheel-quota",
        "namespace": "flywheel-team-vision",
        "labels": {"app.kubernetes.io/managed-by": "flywheel", "flywheel.dev/team": "vision"},
    }
    assert quotas[0]["spec"] == {
        "hard": {"requests.cpu": "24", "requests.memory": "96Gi", "requests.nvidia.com/gpu": "6"}
    }


def test_local_queues_point_at_their_cluster_queue() -> None:
    local = by_kind(teams_to_objects(several()), "LocalQueue")
    assert [(q["metadata"]["namespace"], q["metadata"]["name"], q["spec"]) for q in local] == [  # type: ignore[index]
        ("flywheel-team-vision", "vision", {"clusterQueue": "flywheel-vision"}),
        ("flywheel-team-language", "language", {"clusterQueue": "flywheel-language"}),
        ("flywheel-team-speech", "speech", {"clusterQueue": "flywheel-speech"}),
    ]


def test_priority_classes_become_workload_priority_classes() -> None:
    classes = by_kind(teams_to_objects(several()), "WorkloadPriorityClass")
    assert [(c["metadata"]["name"], c["value"], c.get("description")) for c in classes] == [  # type: ignore[index]
        ("batch", 10, None),
        ("urgent", 100000, "On call."),
    ]


@pytest.mark.parametrize(
    ("cores", "text"), [(2, "2"), (0.5, "500m"), (0.25, "250m"), (1.5, "1500m"), (0, "0")]
)
def test_cpu_quantities(cores: float, text: str) -> None:
    assert cpu_quantity(cores) == text


@pytest.mark.parametrize(("gib", "text"), [(8, "8Gi"), (1.5, "1536Mi"), (0, "0Gi")])
def test_memory_quantities(gib: float, text: str) -> None:
    assert memory_quantity(gib) == text
