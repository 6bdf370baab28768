"""Serving on the real local cluster: the digits model behind the OIP v2 gateway, rollouts.

Cost: 4 to 12 minutes on 2 cores, depending on what else runs there (12 when the cores are
shared with other training jobs). One experiment (about 60 s) trains and deploys version 1
through its `serve` section; later versions are registered in this process (2 s each). Each
serving action is a Ray job of 5 to 15 s. The model stays deployed across the module's tests,
which run in order, and is undeployed at the end.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from flywheel.client import Client
from flywheel.local import PlatformStatus
from flywheel.settings import Settings
from flywheel.specs.serving import ServeSpec
from flywheel.tracking import ROLLOUT_EXPERIMENT, TAG_ROLLOUT_DECISION, TAG_SERVE_SPEC

from .helpers import REPO, copy_experiment, register_digits_version, run_cli

pytestmark = pytest.mark.integration

MODEL = "digits-served"
SERVE_SECTION = """
serve:
  batching: {max_batch_size: 16, batch_wait_timeout_s: 0.002}
  resources: {num_cpus: 0.1}
  rollout: {mode: canary, canary_percent: 30}
"""
CHEAP = ServeSpec.model_validate(
    {"resources": {"num_cpus": 0.1}, "batching": {"max_batch_size": 16}}
)
DIGITS = load_digits()
PIXELS = (DIGITS.data / 16.0).astype(np.float32)


@pytest.fixture(scope="module")
def served(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path_factory: Any
) -> Iterator[Client]:
    """Version 1 trained by an experiment whose serve section deploys it (about 60 s)."""
    spec_text = (REPO / "experiments" / "digits" / "train.yaml").read_text()
    spec_text = (
        spec_text.replace("epochs: 30", "epochs: 3")
        .replace("num_workers: 2", "num_workers: 1")
        .replace("digits-mlp", MODEL)
        + SERVE_SECTION
    )
    spec = copy_experiment(
        REPO / "experiments" / "digits", tmp_path_factory.mktemp("x") / "d", spec_text
    )
    client = Client(platform_settings)
    job_id = client.submit(spec)
    updates = list(client.follow(job_id, poll_s=2.0))
    assert updates[-1].job.state == "SUCCEEDED", client.logs(job_id)[-3000:]
    try:
        yield client
    finally:
        client.undeploy(MODEL)


@pytest.fixture(scope="module")
def http(platform_settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform_settings.serve_url, timeout=30, trust_env=False) as c:
        yield c


def infer_body(rows: np.ndarray, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "input-0", "shape": list(rows.shape), "datatype": "FP32",
             "data": rows.reshape(-1).tolist()}
        ]
    }  # fmt: skip
    if request_id is not None:
        body["id"] = request_id
    return body


def aliases(settings: Settings) -> dict[str, str]:
    return dict(MlflowClient(settings.tracking_uri).get_registered_model(MODEL).aliases)


def test_the_experiment_deploys_its_model_as_champion(
    served: Client, http: httpx.Client, platform_settings: Settings
) -> None:
    [version] = served.models()
    assert (version["model"], version["version"], version["role"]) == (MODEL, "1", "champion")
    assert version["traffic_percent"] == 100.0 and version["replicas"] == 1
    assert aliases(platform_settings) == {"champion": "1"}
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get(f"/v2/models/{MODEL}/ready").json()["ready"] is True
    metadata = http.get(f"/v2/models/{MODEL}").json()
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 64]}]
    assert metadata["outputs"] == [{"name": "output-0", "datatype": "FP32", "shape": [-1, 10]}]


def test_plain_http_inference_answers_with_the_version(served: Client, http: httpx.Client) -> None:
    response = http.post(f"/v2/models/{MODEL}/infer", json=infer_body(PIXELS[:20], "req-1"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (MODEL, "1", "req-1")
    assert response.headers["x-model-version"] == "1"
    [output] = answer["outputs"]
    assert output["shape"] == [20, 10] and output["datatype"] == "FP32"
    predicted = np.asarray(output["data"]).reshape(20, 10).argmax(axis=1)
    assert (predicted == DIGITS.target[:20]).mean() >= 0.7  # 3 epochs: a real, if young, model
    by_version = http.post(f"/v2/models/{MODEL}/versions/1/infer", json=infer_body(PIXELS[:1]))
    assert by_version.json()["model_version"] == "1"


def test_tritonclient_queries_the_gateway(served: Client, platform_settings: Settings) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{platform_settings.serve_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.get_model_metadata(MODEL)["inputs"][0]["shape"] == [-1, 64]
    tensor = triton.InferInput("input-0", [8, 64], "FP32")
    tensor.set_data_from_numpy(PIXELS[:8], binary_data=False)
    result = client.infer(
        MODEL, [tensor], outputs=[triton.InferRequestedOutput("output-0", binary_data=False)]
    )
    assert result.as_numpy("output-0").shape == (8, 10)
    assert result.get_response()["model_version"] == "1"
    client.close()


BAD_REQUESTS = {
    "malformed JSON": (f"/v2/models/{MODEL}/infer", b"{not json", 400),
    "not an object": (f"/v2/models/{MODEL}/infer", b"[1, 2]", 400),
    "no inputs": (f"/v2/models/{MODEL}/infer", b'{"inputs": []}', 400),
    "wrong shape": (
        f"/v2/models/{MODEL}/infer",
        json.dumps(infer_body(PIXELS[:2, :32])).encode(),
        400,
    ),
    "data does not fill the shape": (
        f"/v2/models/{MODEL}/infer",
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [2, 64], "datatype": "FP32", "data": [0.0] * 64}
                ]
            }
        ).encode(),
        400,
    ),
    "wrong datatype": (
        f"/v2/models/{MODEL}/infer",
        json.dumps(
            {"inputs": [{**infer_body(PIXELS[:1])["inputs"][0], "datatype": "INT64"}]}
        ).encode(),
        400,
    ),
    "non-numeric data": (
        f"/v2/models/{MODEL}/infer",
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": ["x"] * 64}
                ]
            }
        ).encode(),
        400,
    ),
    "unknown input name": (
        f"/v2/models/{MODEL}/infer",
        json.dumps(
            {"inputs": [{**infer_body(PIXELS[:1])["inputs"][0], "name": "pixels"}]}
        ).encode(),
        400,
    ),
    "unknown model": (
        "/v2/models/no-such-model/infer",
        json.dumps(infer_body(PIXELS[:1])).encode(),
        404,
    ),
    "unknown version": (
        f"/v2/models/{MODEL}/versions/99/infer",
        json.dumps(infer_body(PIXELS[:1])).encode(),
        404,
    ),
    "feedback for an unknown request": (
        f"/v2/models/{MODEL}/feedback",
        b'{"id": "never-seen", "label": 3}',
        404,
    ),
    "feedback without a label": (f"/v2/models/{MODEL}/feedback", b'{"id": "x"}', 400),
    "oversized body": (f"/v2/models/{MODEL}/infer", b"[" + b"0," * (3 * 1024 * 1024) + b"0]", 413),
}


def test_every_bad_request_gets_its_4xx_in_the_protocol_format(
    served: Client, http: httpx.Client
) -> None:
    for case, (path, body, status) in BAD_REQUESTS.items():
        response = http.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == status, f"{case}: {response.status_code} {response.text}"
        assert set(response.json()) == {"error"}, case
    unknown_path = http.get("/v2/nothing-here")
    assert unknown_path.status_code == 404 and "error" in unknown_path.json()
    assert http.get(f"/v2/models/{MODEL}/infer").status_code == 405


def test_canary_takes_its_share_and_feedback_gives_online_accuracy(
    served: Client, http: httpx.Client, platform_settings: Settings
) -> None:
    version = register_digits_version(
        platform_settings.tracking_uri,
        MODEL,
        seed=2,
        tags={TAG_SERVE_SPEC: CHEAP.model_dump_json()},
    )
    result = served.rollout(MODEL, version, "canary", canary_percent=30)
    assert (result["challenger"], result["mode"], result["challenger_percent"]) == (
        version,
        "canary",
        30,
    )
    assert aliases(platform_settings) == {"champion": "1", "challenger": version}

    answered: Counter[str] = Counter()
    labelled: Counter[str] = Counter()
    for i in range(400):
        row = i % len(PIXELS)
        answer = http.post(
            f"/v2/models/{MODEL}/infer", json=infer_body(PIXELS[row : row + 1], f"c{i}")
        )
        assert answer.status_code == 200, answer.text
        answered[answer.json()["model_version"]] += 1
        if i % 4 == 0:  # a quarter of the answers get their true label back
            label = int(DIGITS.target[row])
            feedback = http.post(
                f"/v2/models/{MODEL}/feedback", json={"id": f"c{i}", "label": label}
            )
            assert feedback.json()["model_version"] == answer.json()["model_version"]
            labelled[answer.json()["model_version"]] += 1
    # Binomial(400, 0.3): mean 120, standard deviation 9.2; 4 deviations either way.
    assert 83 <= answered[version] <= 157, answered
    assert answered["1"] + answered[version] == 400

    listed = {v["version"]: v for v in served.models()}
    assert listed[version]["traffic_percent"] == 30 and listed["1"]["traffic_percent"] == 70
    assert listed[version]["feedback"] == labelled[version]
    assert listed["1"]["online_accuracy"] is not None and listed["1"]["online_accuracy"] > 0.5
    feedback_files = list(
        (Path(platform_settings.storage_root) / "serving" / "feedback" / MODEL).glob("*.json")
    )
    assert len(feedback_files) == 100

    served.rollback(MODEL)
    assert aliases(platform_settings) == {"champion": "1"}
    assert [v["version"] for v in served.models()] == ["1"]


def test_shadow_answers_are_recorded_and_never_returned(
    served: Client, http: httpx.Client, platform_settings: Settings
) -> None:
    version = register_digits_version(
        platform_settings.tracking_uri,
        MODEL,
        seed=3,
        tags={TAG_SERVE_SPEC: CHEAP.model_dump_json()},
    )
    served.rollout(MODEL, version, "shadow")
    for i in range(60):
        answer = http.post(f"/v2/models/{MODEL}/infer", json=infer_body(PIXELS[i : i + 1]))
        assert answer.json()["model_version"] == "1"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shadow = {v["version"]: v for v in served.models()}[version]
        if shadow["shadow_requests"] >= 60:
            break
        time.sleep(0.5)
    assert shadow["shadow_requests"] >= 60 and shadow["requests"] == 0
    assert shadow["traffic_percent"] == 0.0 and 0.0 <= shadow["shadow_agreement"] <= 1.0


def test_promote_and_version_switch_under_load_fail_no_request(
    served: Client, platform_settings: Settings
) -> None:
    """Steady load from three threads while the shadow challenger is promoted, then while
    version 1 is deployed again as champion (a version switch: a new deployment, then the route).
    """
    [challenger] = [v["version"] for v in served.models() if v["role"] == "challenger"]
    failures: list[str] = []
    versions: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=platform_settings.serve_url, timeout=30, trust_env=False) as c:
            while not stop.is_set():
                try:
                    answer = c.post(f"/v2/models/{MODEL}/infer", json=infer_body(PIXELS[:2]))
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                    continue
                if answer.status_code != 200:
                    failures.append(answer.text)
                else:
                    versions[answer.json()["model_version"]] += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    registry = MlflowClient(platform_settings.tracking_uri)
    try:
        time.sleep(1.0)
        served.promote(MODEL)
        assert aliases(platform_settings) == {"champion": challenger}
        assert [v["version"] for v in served.models()] == [challenger]
        answered_before_switch = versions[challenger]
        served.deploy(MODEL, version="1")
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert versions[challenger] > answered_before_switch > 0, versions
    assert aliases(platform_settings) == {"champion": "1"}
    assert [v["version"] for v in served.models()] == ["1"]
    rollouts = registry.get_experiment_by_name(ROLLOUT_EXPERIMENT).experiment_id
    decisions = registry.search_runs(
        [rollouts], filter_string=f"tags.`{TAG_ROLLOUT_DECISION}` = 'promote'"
    )
    assert decisions


def test_progressive_rollout_promotes_a_version_that_meets_its_slos(
    served: Client, platform_settings: Settings
) -> None:
    """Steps 50% then 100%, 2 s each, judged on 10 requests; a load thread supplies them."""
    spec = CHEAP.model_copy(
        update={
            "rollout": CHEAP.rollout.model_validate(
                {"mode": "progressive", "steps": [50, 100], "step_duration_s": 2,
                 "slo": {"min_requests": 10, "max_p95_latency_ms": 5000}}
            )
        }
    )  # fmt: skip
    version = register_digits_version(
        platform_settings.tracking_uri, MODEL, seed=4, tags={TAG_SERVE_SPEC: spec.model_dump_json()}
    )
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=platform_settings.serve_url, timeout=30, trust_env=False) as c:
            while not stop.is_set():
                c.post(f"/v2/models/{MODEL}/infer", json=infer_body(PIXELS[:1]))
                time.sleep(0.02)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        result = served.rollout(MODEL, version, "progressive", wait=True)
    finally:
        stop.set()
        thread.join()
    assert result["decision"] == "promote", result
    assert aliases(platform_settings) == {"champion": version}
    client = MlflowClient(platform_settings.tracking_uri)
    experiment = client.get_experiment_by_name(ROLLOUT_EXPERIMENT)
    [run] = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"attributes.run_name = '{MODEL}-v{version}-progressive'",
    )
    assert run.data.tags[TAG_ROLLOUT_DECISION] == "promote"
    steps = client.get_metric_history(run.info.run_id, "traffic_percent")
    assert [m.value for m in sorted(steps, key=lambda m: m.step)] == [50.0, 100.0]


def test_cli_serves_and_rejects_bad_input_with_exit_2(
    served: Client, platform_settings: Settings, tmp_path: Path
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(infer_body(PIXELS[:1], "cli-1")))
    predicted = run_cli(platform_settings, "predict", MODEL, "--json", str(request))
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["id"] == "cli-1"
    listed = run_cli(platform_settings, "models", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [v["model"] for v in json.loads(listed.stdout)] == [MODEL]
    table = run_cli(platform_settings, "models")
    assert table.returncode == 0 and "champion" in table.stdout
    before = served.models()
    # Input errors that need no cluster are tested in tests/unit/cli; these need the registry
    # or the gateway to be told apart.
    for args in (
        ("deploy", "no-such-model"),
        ("deploy", MODEL, "--version", "99"),
        ("promote", MODEL),  # no challenger
    ):
        result = run_cli(platform_settings, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert [(v["version"], v["role"]) for v in served.models()] == [
        (v["version"], v["role"]) for v in before
    ]
