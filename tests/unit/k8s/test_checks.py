"""Each rule a schema cannot express fires on a manifest that breaks it, and only that rule."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flywheel.errors import K8sError
from flywheel.k8s.checks import check_manifests
from flywheel.k8s.kueue import teams_to_objects
from flywheel.k8s.manifests import experiment_to_rayjob, require_valid
from flywheel.k8s.objects import Namespace, ObjectMeta
from flywheel.k8s.rayjob import K8sTarget
from flywheel.settings import Settings
from flywheel.specs.loading import load_spec
from flywheel.specs.teams import load_teams

from .conftest import REPO

TEAMS = load_teams(REPO / "cluster" / "teams.yaml")
CONTEXT = [o.to_manifest() for o in teams_to_objects(TEAMS)]

Manifest = dict[str, Any]


@pytest.fixture
def rayjob() -> Manifest:
    spec = load_spec(REPO / "experiments/digits/train.yaml")
    settings = Settings(home=Path("/nonexistent"))
    job = experiment_to_rayjob(spec, "t.yaml", b"", TEAMS, K8sTarget(), settings, "vision-d-1a2b")
    return job.to_manifest()


def rules(manifest: Manifest) -> list[str]:
    return [p.rule for p in check_manifests([manifest], CONTEXT)]


def worker(manifest: Manifest) -> Manifest:
    return manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]  # type: ignore[no-any-return]


def worker_requests(manifest: Manifest) -> Manifest:
    return worker(manifest)["template"]["spec"]["containers"][0]["resources"]["requests"]  # type: ignore[no-any-return]


def _rename(name: str) -> Callable[[Manifest], None]:
    return lambda m: m["metadata"].update(name=name)


BREAKS: dict[str, tuple[str, Callable[[Manifest], None]]] = {
    "name-too-long": ("name-length", _rename("a" * 48)),
    "name-starts-with-a-digit": ("name-length", _rename("1-digits")),
    "no-shutdown": ("kueue-shutdown", lambda m: m["spec"].update(shutdownAfterJobFinishes=False)),
    "autoscaling": (
        "kueue-shutdown",
        lambda m: m["spec"]["rayClusterSpec"].update(enableInTreeAutoscaling=True),
    ),
    "float-quantity": ("quantity-string", lambda m: worker_requests(m).update(cpu=0.5)),
    "int-quantity": ("quantity-string", lambda m: worker_requests(m).update(memory=4)),
    "bad-quantity": ("quantity-string", lambda m: worker_requests(m).update(memory="4 GB")),
    "uncovered-resource": (
        "resource-coverage",
        lambda m: worker_requests(m).update({"example.com/fpga": "1"}),
    ),
    "uncovered-resource-in-submitter": (
        "resource-coverage",
        lambda m: m["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["resources"][
            "limits"
        ].update({"example.com/fpga": "1"}),
    ),
    "unknown-queue": (
        "resource-coverage",
        lambda m: m["metadata"]["labels"].update({"kueue.x-k8s.io/queue-name": "nobody"}),
    ),
    "min-above-max": ("replicas-range", lambda m: worker(m).update(minReplicas=3, maxReplicas=2)),
    "replicas-above-max": ("replicas-range", lambda m: worker(m).update(replicas=5)),
    "worker-group-named-head": ("worker-group-name", lambda m: worker(m).update(groupName="head")),
    "label-too-long": ("label-value", lambda m: m["metadata"]["labels"].update(x="v" * 64)),
    "label-with-space": ("label-value", lambda m: m["metadata"]["labels"].update(x="a b")),
    "label-not-a-string": ("label-value", lambda m: m["metadata"]["labels"].update(x=True)),
    "label-ends-with-dash": (
        "label-value",
        lambda m: worker(m)["template"]["metadata"]["labels"].update(x="a-"),
    ),
}


def test_the_rendered_rayjob_breaks_no_rule(rayjob: Manifest) -> None:
    assert rules(rayjob) == []


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_each_rule_fires(case: str, rayjob: Manifest) -> None:
    rule, breaks = BREAKS[case]
    broken = copy.deepcopy(rayjob)
    breaks(broken)
    assert rules(broken) == [rule]


def test_every_problem_is_reported_at_once(rayjob: Manifest) -> None:
    for case in ("name-too-long", "float-quantity", "worker-group-named-head"):
        BREAKS[case][1](rayjob)
    assert sorted(rules(rayjob)) == ["name-length", "quantity-string", "worker-group-name"]


def test_quota_amounts_must_be_strings() -> None:
    queue = copy.deepcopy(next(m for m in CONTEXT if m["kind"] == "ClusterQueue"))
    queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] = 2
    (problem,) = check_manifests([queue])
    assert problem.rule == "quantity-string"
    assert "nominalQuota" in problem.message


def test_a_namespace_name_is_a_dns_label() -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Team_A"}}
    assert [p.rule for p in check_manifests([namespace])] == ["name-length"]


def test_require_valid_names_the_object_and_rule() -> None:
    bad = Namespace(metadata=ObjectMeta(name="x", labels={"team": "-bad"}))
    with pytest.raises(K8sError, match=r"Namespace/x: label team='-bad' .* \[label-value\]"):
        require_valid([bad])
