"""The Helm chart, rendered and linted by Helm's own engine (helm-python-sdk, no cluster).

Default values and four other value sets; every rendered object validates strictly (built-in
kinds against Kubernetes' schemas, RayCluster against KubeRay's CRD) and breaks none of the
rules in flywheel.k8s.checks. The Kueue objects equal what `flywheel k8s render-teams` prints.
"""

from __future__ import annotations

import json
import os
from typing import Any

import helm_python as helm
import pytest
import yaml

from flywheel.k8s.checks import check_manifests
from flywheel.k8s.kueue import teams_to_objects
from flywheel.k8s.rayjob import K8sTarget
from flywheel.k8s.rayservice import cluster_serve_target, serve_config_to_rayservice
from flywheel.serving.config import document_to_serve_config
from flywheel.serving.document import ServingDocument
from flywheel.settings import Settings
from flywheel.specs.teams import TeamsSpec

from .conftest import REPO, Validate

CHART = REPO / "charts" / "flywheel"
RELEASE = "flywheel"
NAMESPACE = "flywheel"
KUEUE_SIDE = {"ResourceFlavor", "WorkloadPriorityClass", "ClusterQueue", "LocalQueue"}

HEAD_GROUP = {"name": "head", "minReplicas": 0, "maxReplicas": 1, "cpu": "1", "memory": "1Gi"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "gpu-groups": {
        "rayCluster": {
            "workerGroups": [
                {"name": "cpu", "minReplicas": 1, "maxReplicas": 8, "cpu": "8", "memory": "32Gi"},
                {
                    "name": "a100",
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "cpu": "12",
                    "memory": "96Gi",
                    "gpu": 8,
                },
                {
                    "name": "l4",
                    "minReplicas": 0,
                    "maxReplicas": 16,
                    "cpu": "4",
                    "memory": "16Gi",
                    "gpu": 1,
                },
            ]
        }
    },
    "external-postgres": {
        "database": {
            "external": {
                "url": "postgresql+psycopg://flywheel:pw@db.example.com:5432/flywheel",
                "mlflowUrl": "postgresql+psycopg://flywheel:pw@db.example.com:5432/mlflow",
            }
        },
        "storage": {"s3": {"existingSecret": "company-s3"}},
    },
    "several-teams": {
        "teams": yaml.safe_load((REPO / "cluster" / "teams.yaml").read_text())
        | {
            "teams": [
                *yaml.safe_load((REPO / "cluster" / "teams.yaml").read_text())["teams"],
                {
                    "name": "speech",
                    "priority": "high",
                    "cohort": "audio",
                    "quota": {"cpu": 0.5, "gpu": 2, "memory_gib": 1.5},
                    "lending_limit": {"cpu": 0.25, "gpu": 1, "memory_gib": 0.5},
                    "fair_share_weight": 0.75,
                },
            ]
        }
    },
    "no-shared-cluster": {"rayCluster": {"enabled": False}, "networkPolicies": {"enabled": False}},
}


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values``, template by template."""
    files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            objects += [d for d in yaml.safe_load_all(text) if d]
    return objects


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def merged_teams(chart: helm.Chart, values: dict[str, Any]) -> TeamsSpec:
    return TeamsSpec.model_validate(chart.merge_values(values)["teams"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_validates_strictly(chart: helm.Chart, validate: Validate, name: str) -> None:
    objects = render(chart, VALUE_SETS[name])
    assert len(objects) > 10
    for obj in objects:
        validate(obj)
    assert check_manifests(objects) == []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_chart_lints_clean(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, kube_version="v1.33.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_kueue_objects_equal_render_teams(chart: helm.Chart, name: str) -> None:
    values = VALUE_SETS[name]
    rendered = [
        o
        for o in render(chart, values)
        if o["kind"] in KUEUE_SIDE
        or (o["kind"] in ("Namespace", "ResourceQuota")
            and o["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "flywheel")
    ]  # fmt: skip
    expected = [o.to_manifest() for o in teams_to_objects(merged_teams(chart, values))]
    assert rendered == expected


def test_the_several_teams_set_exercises_fractions_and_lending(chart: helm.Chart) -> None:
    queues = of_kind(render(chart, VALUE_SETS["several-teams"]), "ClusterQueue")
    assert [q["metadata"]["name"] for q in queues] == [
        "flywheel-vision", "flywheel-language", "flywheel-speech"
    ]  # fmt: skip
    speech = queues[2]["spec"]
    assert speech["fairSharing"] == {"weight": "750m"}
    assert speech["resourceGroups"][0]["flavors"][0]["resources"][0] == {
        "name": "cpu", "nominalQuota": "500m", "borrowingLimit": "0", "lendingLimit": "250m"
    }  # fmt: skip


def test_gpu_groups_request_gpus_and_tolerate_gpu_nodes(chart: helm.Chart) -> None:
    (cluster,) = of_kind(render(chart, VALUE_SETS["gpu-groups"]), "RayCluster")
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    a100 = groups["a100"]["template"]["spec"]
    assert a100["containers"][0]["resources"]["requests"] == {
        "cpu": "12", "memory": "96Gi", "nvidia.com/gpu": "8"
    }  # fmt: skip
    assert a100["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "tolerations" not in groups["cpu"]["template"]["spec"]
    assert groups["a100"]["rayStartParams"] == {"num-gpus": "8"}
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["authOptions"] == {"mode": "token", "secretName": "flywheel-ray-token"}


def test_external_postgres_replaces_the_bundled_database(chart: helm.Chart) -> None:
    objects = render(chart, VALUE_SETS["external-postgres"])
    assert of_kind(objects, "StatefulSet") == []
    (secret,) = [
        s for s in of_kind(objects, "Secret") if s["metadata"]["name"].endswith("database")
    ]
    assert secret["stringData"]["DATABASE_URL"].endswith("@db.example.com:5432/flywheel")
    assert "flywheel-s3" not in {s["metadata"]["name"] for s in of_kind(objects, "Secret")}
    names = {p["metadata"]["name"] for p in of_kind(objects, "NetworkPolicy")}
    assert "flywheel-database" not in names


def test_the_bundled_database_is_a_statefulset_on_a_volume(chart: helm.Chart) -> None:
    (database,) = of_kind(render(chart, {}), "StatefulSet")
    assert database["spec"]["volumeClaimTemplates"][0]["spec"]["resources"] == {
        "requests": {"storage": "20Gi"}
    }


def test_rbac_is_namespaced_and_least_privilege(chart: helm.Chart) -> None:
    objects = render(chart, VALUE_SETS["several-teams"])
    assert of_kind(objects, "ClusterRole") == of_kind(objects, "ClusterRoleBinding") == []
    roles = {r["metadata"]["namespace"]: r["rules"] for r in of_kind(objects, "Role")}
    assert set(roles) == {NAMESPACE} | {
        f"flywheel-team-{t}" for t in ("vision", "language", "speech")
    }
    team_rules = roles["flywheel-team-vision"]
    assert {(tuple(r["resources"]), tuple(r["verbs"])) for r in team_rules} == {
        (("rayjobs",), ("get", "list", "watch", "create", "patch", "delete")),
        (("workloads",), ("get", "list", "watch")),
    }
    assert all("*" not in r["verbs"] + r["resources"] for rules in roles.values() for r in rules)


def test_only_the_platform_reaches_ray_ports(chart: helm.Chart) -> None:
    policies = {p["metadata"]["name"]: p for p in of_kind(render(chart, {}), "NetworkPolicy")}
    ray = policies["flywheel-ray"]["spec"]
    assert ray["podSelector"] == {"matchLabels": {"ray.io/cluster": "flywheel-ray"}}
    intra, platform = ray["ingress"]
    assert intra == {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": "flywheel-ray"}}}]}
    assert platform["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "control-plane",
                                         "app.kubernetes.io/instance": RELEASE}}}
    ]  # fmt: skip
    assert sorted(p["port"] for p in platform["ports"]) == [6379, 8000, 8265, 10001]
    isolation = policies["flywheel-team-isolation"]
    assert isolation["metadata"]["namespace"] == "flywheel-team-ml"


def test_the_serving_policy_selects_the_pods_of_the_rayservice_the_control_plane_makes(
    chart: helm.Chart, validate: Validate
) -> None:
    """The RayService is rendered with the name the chart gives the control plane; its pods carry
    the label the chart's policy selects, and only the platform reaches their Ray ports."""
    objects = render(chart, {})
    policy = {p["metadata"]["name"]: p for p in of_kind(objects, "NetworkPolicy")}[
        "flywheel-serving"
    ]
    validate(policy)
    env = {e["name"]: e.get("value") for e in of_kind(objects, "Deployment")[0]["spec"]["template"]
           ["spec"]["containers"][0]["env"]}  # fmt: skip
    service = serve_config_to_rayservice(
        document_to_serve_config(ServingDocument(), cluster_serve_target(K8sTarget(), 1024)),
        K8sTarget(), env["FLYWHEEL_SERVING_NAME"], env["FLYWHEEL_SERVING_NAMESPACE"],
    ).to_manifest()  # fmt: skip
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert policy["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert all(selector.items() <= p["template"]["metadata"]["labels"].items() for p in pods)
    intra, platform = policy["spec"]["ingress"]
    assert intra == {"from": [{"podSelector": {"matchLabels": selector}}]}
    assert platform["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "control-plane",
                                         "app.kubernetes.io/instance": RELEASE}}}
    ]  # fmt: skip
    assert sorted(p["port"] for p in platform["ports"]) == [6379, 8000, 8265, 10001]


def test_pods_get_the_grace_period_the_rayjobs_get(chart: helm.Chart) -> None:
    values = chart.merge_values({})
    assert values["jobs"]["terminationGracePeriodSeconds"] == K8sTarget().grace_period_s
    assert values["jobs"]["ttlSecondsAfterFinished"] == K8sTarget().ttl_s
    (cluster,) = of_kind(
        render(chart, {"jobs": {"terminationGracePeriodSeconds": 600}}), "RayCluster"
    )
    spec = cluster["spec"]
    pods = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    assert {p["template"]["spec"]["terminationGracePeriodSeconds"] for p in pods} == {600}


def test_the_rendering_defaults_match_the_chart_defaults(chart: helm.Chart) -> None:
    (deployment,) = [
        d
        for d in of_kind(render(chart, {}), "Deployment")
        if "control-plane" in d["metadata"]["name"]
    ]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["FLYWHEEL_MLFLOW_TRACKING_URI"] == K8sTarget().tracking_uri
    assert env["FLYWHEEL_STORAGE_ROOT"] == K8sTarget().storage_root


def test_values_schema_teams_part_is_generated_from_the_teams_model() -> None:
    """`FLYWHEEL_REGENERATE=1 pytest -k values_schema` rewrites it after a teams model change."""
    path = CHART / "values.schema.json"
    schema = json.loads(path.read_text())
    generated = TeamsSpec.model_json_schema()
    defs = generated.pop("$defs")
    expected = {**{k: v for k, v in schema["$defs"].items() if k not in defs}, **defs}
    expected["TeamsSpec"] = generated
    if os.environ.get("FLYWHEEL_REGENERATE") == "1":
        path.write_text(json.dumps({**schema, "$defs": expected}, indent=2) + "\n")
    assert schema["$defs"] == expected, "regenerate: FLYWHEEL_REGENERATE=1 pytest -k values_schema"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"storage": {"root": "/data"}}, "/storage/root"),
        ({"rayCluster": {"workerGroups": [HEAD_GROUP]}}, "/rayCluster/workerGroups/0/name"),
        ({"teams": {"teams": [{"name": "x", "quota": {"cpus": 1}}]}}, "'cpus' not allowed"),
        ({"controlPlane": {"replica": 3}}, "'replica' not allowed"),
    ],
)  # fmt: skip
def test_the_values_schema_rejects_bad_values(
    chart: helm.Chart, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        chart.render(change, name=RELEASE, namespace=NAMESPACE)


def test_a_team_with_an_unknown_priority_class_fails_the_render(chart: helm.Chart) -> None:
    teams = {"teams": [{"name": "vision", "priority": "urgent", "quota": {"cpu": 1}}]}
    with pytest.raises(helm.HelmRenderError, match="priority urgent, which is not in"):
        chart.render({"teams": teams}, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_flywheel_variable_the_chart_sets_is_a_setting(chart: helm.Chart, name: str) -> None:
    """A variable Settings does not know is silently ignored (extra="ignore"): catch it here."""
    names = {
        variable["name"]
        for obj in render(chart, VALUE_SETS[name])
        for container in _containers(obj)
        for variable in container.get("env") or []
        if variable["name"].startswith("FLYWHEEL_")
    }
    assert {"FLYWHEEL_BACKEND", "FLYWHEEL_JOB_GRACE_PERIOD_S", "FLYWHEEL_JOB_TTL_S"} <= names
    known = {f"FLYWHEEL_{field.upper()}" for field in Settings.model_fields}
    assert names - known == set()


def test_the_control_plane_reads_the_chart_s_environment(
    chart: helm.Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {"jobs": {"terminationGracePeriodSeconds": 600, "ttlSecondsAfterFinished": 60}}
    (deployment,) = [
        d
        for d in of_kind(render(chart, values), "Deployment")
        if "control-plane" in d["metadata"]["name"]
    ]
    for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in variable:
            monkeypatch.setenv(variable["name"], variable["value"])
    settings = Settings()
    assert settings.backend == "kubernetes"
    assert (settings.job_grace_period_s, settings.job_ttl_s) == (600, 60)
    assert settings.control_plane_port == chart.merge_values({})["controlPlane"]["port"]
    image = chart.merge_values({})["image"]
    assert settings.job_image == f"{image['repository']}:{image['tag']}"
    assert settings.job_s3_secret == "flywheel-s3"
    # Serving: the RayService lives in the release namespace, where the Role allows RayServices.
    assert (settings.serving_namespace, settings.serving_name) == (NAMESPACE, "flywheel-serving")
    (role,) = [r for r in of_kind(render(chart, values), "Role")
               if r["metadata"]["namespace"] == settings.serving_namespace]  # fmt: skip
    (rule,) = [r for r in role["rules"] if r["resources"] == ["rayservices"]]
    assert {"get", "create", "patch"} <= set(rule["verbs"])


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = (obj.get("spec") or {}).get("template", {}).get("spec") or {}
    return [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]


def test_prometheus_peers_reach_the_ray_metrics_port_only_when_named(
    chart: helm.Chart, validate: Validate
) -> None:
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    values = {"networkPolicies": {"prometheusFrom": [monitoring]}}
    policies = {p["metadata"]["name"]: p for p in of_kind(render(chart, values), "NetworkPolicy")}
    closed = {p["metadata"]["name"]: p for p in of_kind(render(chart, {}), "NetworkPolicy")}

    for name in ("flywheel-ray", "flywheel-serving", "flywheel-team-isolation"):
        validate(policies[name])
        scrape = policies[name]["spec"]["ingress"][-1]
        assert scrape == {"from": [monitoring], "ports": [{"port": 8080, "protocol": "TCP"}]}
        assert all(monitoring not in rule.get("from", [])
                   for rule in closed[name]["spec"]["ingress"])  # fmt: skip
