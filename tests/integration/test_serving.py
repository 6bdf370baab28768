"""Serving on the real local cluster: the digits model behind Serve, OIP v2, declarative operations.

Cost: about 11 minutes (662 s measured) on 2 cores shared with other test runs; less on an
idle machine. One experiment (about
60 s), submitted and followed through the CLI, trains and deploys version 1 through its `serve`
section (the job calls the serving
service, which applies the document through Serve's REST API); later versions are registered in
this process (2 s each). Each serving operation is a PUT to Serve's REST API and a wait until
the replicas run the new route (a traffic change: about a second; a new version: a few). The
model stays deployed across the module's tests, which run in order, and is undeployed at the end.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import mlflow.pytorch
import numpy as np
import psutil
import pytest
import schemathesis
import torch
import tritonclient.http as triton
from hypothesis import HealthCheck, given
from mlflow import MlflowClient
from mlflow.entities import Run
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sklearn.datasets import load_digits

from flywheel.backends.documents import FileDocumentStore
from flywheel.backends.serving import ServeRestBackend
from flywheel.client import Client
from flywheel.errors import ServeConflictError
from flywheel.local import PlatformStatus, read_ray_auth_token
from flywheel.request_log import is_sampled, read_requests
from flywheel.rollout import serve_target
from flywheel.serving.document import ServingDocument
from flywheel.serving_service import ServingService
from flywheel.settings import Settings
from flywheel.specs.serving import ServeSpec
from flywheel.tracking import ROLLOUT_EXPERIMENT, TAG_ROLLOUT_DECISION, TAG_SERVE_SPEC
from flywheel.wire import ServedVersion

from .helpers import (
    REPO,
    acting_as,
    copy_experiment,
    error_code,
    register_digits_version,
    run_cli,
    run_of_job,
    team_settings,
)

pytestmark = pytest.mark.integration

MODEL = "digits-served"
SERVE_SECTION = """
serve:
  resources: {num_cpus: 0.1}
  rollout: {mode: canary, canary_percent: 30}
"""
CHEAP = ServeSpec.model_validate({"resources": {"num_cpus": 0.1}})
DIGITS = load_digits()
PIXELS = (DIGITS.data / 16.0).astype(np.float32)


@dataclass(frozen=True)
class Submitted:
    """The module's experiment, submitted with ``flywheel submit --follow``."""

    job_id: str
    stdout: str


@pytest.fixture(scope="module")
def submitted(
    embedded_platform: PlatformStatus, platform_settings: Settings, tmp_path_factory: Any
) -> Iterator[Submitted]:
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
    try:
        result = run_cli(platform_settings, "submit", str(spec), "--follow")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        job_id = re.search(r"submitted job (\S+)", result.stdout).group(1)  # type: ignore[union-attr]
        yield Submitted(job_id, result.stdout)
    finally:
        Client(platform_settings).undeploy(MODEL)


@pytest.fixture(scope="module")
def served(submitted: Submitted, platform_settings: Settings) -> Client:
    return Client(platform_settings)


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


def roles(client: Client) -> list[tuple[str, str]]:
    return [(v.version, v.role) for v in client.models() if v.model == MODEL]


def new_version(
    settings: Settings, seed: int, spec: ServeSpec = CHEAP, trained: bool = True
) -> str:
    tags = {TAG_SERVE_SPEC: spec.model_dump_json()}
    return register_digits_version(settings.tracking_uri, MODEL, seed, tags, trained)


class Load:
    """Steady load from ``threads`` threads; every answer's version counted, every failure kept."""

    def __init__(self, settings: Settings, threads: int = 3) -> None:
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self._url = settings.serve_url
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30, trust_env=False) as c:
            while not self._stop.is_set():
                try:
                    answer = c.post(f"/v2/models/{MODEL}/infer", json=infer_body(PIXELS[:2]))
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text}")
                else:
                    self.versions[answer.json()["model_version"]] += 1
                time.sleep(0.01)


def test_the_experiment_deploys_its_model_as_champion(
    served: Client, http: httpx.Client, platform_settings: Settings
) -> None:
    [version] = served.models()
    assert (version.model, version.version, version.role) == (MODEL, "1", "champion")
    assert version.traffic_percent == 100.0 and version.replicas == 1
    assert aliases(platform_settings) == {"champion": "1"}
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    assert http.get(f"/v2/models/{MODEL}/ready").json()["ready"] is True
    metadata = http.get(f"/v2/models/{MODEL}").json()
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 64]}]
    assert metadata["outputs"] == [{"name": "output-0", "datatype": "FP32", "shape": [-1, 10]}]
    document = FileDocumentStore(Path(platform_settings.storage_root) / "serving").read()
    assert document.models[MODEL].champion == "1"


def test_the_cli_followed_checks_training_tracking_and_registration(
    submitted: Submitted, platform_settings: Settings
) -> None:
    """What `flywheel submit --follow` ran is all in MLflow: run, metrics, data, model."""
    job_id, stdout = submitted.job_id, submitted.stdout
    assert "baseline" in stdout and "overfit" in stdout
    assert f"job {job_id} succeeded" in stdout
    client = MlflowClient(platform_settings.tracking_uri)
    run = run_of_job(platform_settings.tracking_uri, job_id)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert {"train_loss", "val_loss", "baseline_val_accuracy", "overfit_final_loss"} <= set(
        run.data.metrics
    )
    assert run.data.params["train.scaling.num_workers"] == "1"
    assert run.data.params["version.ray"] == "2.60.0"
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    assert inputs["training"].digest == run.data.tags["flywheel.snapshot"][:36]
    assert run.data.tags["flywheel.snapshot_url"].endswith(run.data.tags["flywheel.snapshot"])
    assert "spec/train.yaml" in [a.path for a in client.list_artifacts(run.info.run_id, "spec")]
    version = client.get_model_version(MODEL, "1")
    assert version.run_id == run.info.run_id
    assert version.tags["flywheel.profile"] == "profile/training_profile.json"
    mlflow.set_tracking_uri(platform_settings.tracking_uri)
    model = mlflow.pytorch.load_model(f"models:/{MODEL}/1")
    assert model(torch.zeros(3, 64)).shape == (3, 10)
    _assert_the_run_and_model_are_the_teams_alone(platform_settings, job_id, run)


def _assert_the_run_and_model_are_the_teams_alone(
    settings: Settings, job_id: str, run: Run
) -> None:
    """The job ran as its team's MLflow identity (vision): the team reads what it created,
    another team reads none of it, and the password is in no param, tag or job log."""
    client = MlflowClient(settings.tracking_uri)
    vision = Client(team_settings(settings, "vision")).mlflow_env()
    language = Client(team_settings(settings, "language")).mlflow_env()
    with acting_as(vision.username, vision.password):
        assert client.get_run(run.info.run_id).info.status == "FINISHED"
        assert client.get_registered_model(MODEL).name == MODEL
    with acting_as(language.username, language.password):
        assert error_code(lambda: client.get_run(run.info.run_id)) == "PERMISSION_DENIED"
        assert error_code(lambda: client.get_registered_model(MODEL)) == ("PERMISSION_DENIED")
    assert vision.password
    recorded = str(run.data.params) + str(run.data.tags) + Client(settings).logs(job_id)
    assert vision.password not in recorded


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


def test_every_http_listener_of_the_platform_is_on_loopback(
    served: Client, platform_settings: Settings, http: httpx.Client
) -> None:
    """Lists every TCP listener that a process of the platform opened while a model is served
    through HAProxy: none answers HTTP on a non-loopback address. Replicas' inter-deployment gRPC
    servers listen on all interfaces (hard-coded in Ray 2.60) and speak no HTTP/1."""
    assert http.get(f"/v2/models/{MODEL}/ready").status_code == 200
    found = platform_listeners(platform_settings.home)
    names = {name for _, _, name in found}
    assert "haproxy" in names, found  # the gateway is HAProxy: direct ingress is on
    ports = {port for _, port, _ in found}
    assert {platform_settings.serve_port, platform_settings.serve_haproxy_stats_port} <= ports
    exposed = [(ip, port, name) for ip, port, name in found if not is_loopback(ip)]
    answering = [(ip, port, name) for ip, port, name in exposed if answers_http(port)]
    assert answering == [], f"HTTP on a non-loopback address: {answering} (all: {found})"
    assert "haproxy" not in {name for _, _, name in exposed}


def platform_listeners(home: Path) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of the platform's processes."""
    roots = [int(p.read_text()) for p in (home / "run").glob("*.pid")]
    pids = {pid for root in roots for pid in (root, *descendants(root))}
    return sorted(
        (c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    )


def descendants(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def answers_http(port: int) -> bool:
    """Whether a socket listening on all interfaces answers an HTTP/1.1 request on this
    machine's first non-loopback address (on loopback where the machine has none)."""
    with socket.create_connection((non_loopback_address(), port), timeout=3) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        try:
            return connection.recv(5) == b"HTTP/"
        except OSError:  # reset or timed out: no HTTP answer
            return False


def non_loopback_address() -> str:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not is_loopback(address.address):
                return address.address
    return "127.0.0.1"


def test_metrics_and_request_log_record_the_requests_of_each_version(
    served: Client, http: httpx.Client, platform_settings: Settings
) -> None:
    """Ray's metrics agent exports the gateway's counters (127.0.0.1 only), and the request log
    holds the sample the serve section asks for (10 %, by request id), which `monitor` reads.
    Cost: a few seconds (the agent exports every few seconds; the log flushes every 2 s)."""
    ids = [f"metrics-{i}" for i in range(40)]
    for request_id in ids:
        answer = http.post(f"/v2/models/{MODEL}/infer", json=infer_body(PIXELS[:1], request_id))
        assert answer.status_code == 200, answer.text
    sampled = {i for i in ids if is_sampled(i, 0.1)}
    assert sampled  # the ids are fixed: the sample is known before the run

    def logged() -> set[str]:
        found = read_requests(str(platform_settings.storage_root), MODEL)
        return {r.request_id for r in found if r.request_id in ids and r.version == "1"}

    assert poll(lambda: logged() == sampled, 30), logged()
    report = served.monitor(MODEL)
    assert {v.version: v.requests for v in report.versions}["1"] >= len(sampled)

    url = f"http://127.0.0.1:{platform_settings.ray_metrics_port}/metrics"
    assert poll(lambda: _served_requests(url) >= len(ids), 60), _served_requests(url)
    port = platform_settings.ray_metrics_port
    listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}  # fmt: skip
    assert listening == {"127.0.0.1"}


def poll(check: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``check`` holds within ``timeout_s`` (asked every half second)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _served_requests(url: str) -> float:
    """The gateway's request counter of version 1 (answers, not shadows) on Ray's endpoint."""
    text = httpx.get(url, timeout=10, trust_env=False).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ray_flywheel_serve_requests_total"
        and sample.labels.get("model") == MODEL
        and sample.labels.get("version") == "1"
        and sample.labels.get("shadow") == "false"
    )


def test_tritonclient_with_its_defaults_against_every_endpoint(
    served: Client, platform_settings: Settings
) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{platform_settings.serve_port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata()["name"] == "flywheel"
        assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
        assert not client.is_model_ready(MODEL, "99") and not client.is_model_ready("nope")
        assert client.get_model_metadata(MODEL)["inputs"][0]["shape"] == [-1, 64]
        assert client.get_model_metadata(MODEL, "1")["versions"] == ["1"]
        tensor = triton.InferInput("input-0", [8, 64], "FP32")
        tensor.set_data_from_numpy(PIXELS[:8])  # default: binary tensor data
        result = client.infer(MODEL, [tensor], request_id="t-1")  # default: binary outputs
        scores = result.as_numpy("output-0")
        assert scores.shape == (8, 10) and scores.dtype == np.float32
        assert result.get_response()["id"] == "t-1"
        asked = client.infer(
            MODEL, [tensor], model_version="1", outputs=[triton.InferRequestedOutput("output-0")]
        )
        np.testing.assert_allclose(asked.as_numpy("output-0"), scores, rtol=1e-5)
        assert asked.get_response()["model_version"] == "1"
    finally:
        client.close()


def nan_body() -> bytes:
    return json.dumps(infer_body(PIXELS[:1])).encode().replace(b"0.0,", b"NaN,", 1)


BAD_REQUESTS = {
    "malformed JSON": (f"/v2/models/{MODEL}/infer", b"{not json", 400),
    "not an object": (f"/v2/models/{MODEL}/infer", b"[1, 2]", 400),
    "no inputs": (f"/v2/models/{MODEL}/infer", b'{"inputs": []}', 400),
    "NaN in the data": (f"/v2/models/{MODEL}/infer", nan_body(), 400),
    "wrong shape": (
        f"/v2/models/{MODEL}/infer",
        json.dumps(infer_body(PIXELS[:2, :32])).encode(),
        400,
    ),
    "wrong datatype": (
        f"/v2/models/{MODEL}/infer",
        json.dumps(
            {"inputs": [{**infer_body(PIXELS[:1])["inputs"][0], "datatype": "INT64"}]}
        ).encode(),
        400,
    ),
    "unknown requested output": (
        f"/v2/models/{MODEL}/infer",
        json.dumps({**infer_body(PIXELS[:1]), "outputs": [{"name": "nope"}]}).encode(),
        400,
    ),
    "unknown model": ("/v2/models/no-such-model/infer", b"{}", 404),
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
    bad_length = http.post(
        f"/v2/models/{MODEL}/infer", content=b"{}", headers={"inference-header-content-length": "9"}
    )
    assert bad_length.status_code == 400
    assert http.get(f"/v2/models/{MODEL}/infer").status_code == 405


_GATEWAY_FUZZ = hypothesis.settings(
    max_examples=20, deadline=None, suppress_health_check=list(HealthCheck)
)


def test_schemathesis_against_the_gateways_openapi_document_no_5xx_and_schema_valid_answers(
    served: Client, platform_settings: Settings
) -> None:
    """Every operation of the model's own OpenAPI document, 20 generated requests each (about
    13 s measured): never a 5xx, and every answer (status, content type, body) as the document
    says."""
    prefix = f"{platform_settings.serve_url}/v2/models/{MODEL}"
    schema = schemathesis.openapi.from_url(f"{prefix}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7
    answered: Counter[int] = Counter()

    for operation in operations:

        @given(case=operation.as_strategy())
        @_GATEWAY_FUZZ
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=prefix)
            answered[response.status_code] += 1
            assert response.status_code < 500, (case.method, case.path, response.text)
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

        check()
    assert answered[200] > 0 and answered[400] > 0, answered


def test_two_concurrent_operations_one_wins_the_other_gets_a_conflict(
    served: Client, platform_settings: Settings
) -> None:
    """Both operations read the same generation (a barrier holds them there); one writes it."""
    version = new_version(platform_settings, seed=5)
    barrier = threading.Barrier(2)

    class TogetherStore(FileDocumentStore):
        def read(self) -> ServingDocument:
            document = super().read()
            barrier.wait(timeout=60)
            return document

    def service() -> ServingService:
        store = TogetherStore(Path(platform_settings.storage_root) / "serving")
        backend = ServeRestBackend(
            platform_settings.jobs_url, read_ray_auth_token(platform_settings)
        )
        return ServingService(store, backend, serve_target(platform_settings))

    outcomes: list[str] = []

    def operate(percent: float) -> None:
        try:
            service().rollout(MODEL, version, "canary", percent)
            outcomes.append(f"won {percent:g}")
        except ServeConflictError as e:
            outcomes.append(f"conflict: {e}")

    threads = [threading.Thread(target=operate, args=(p,)) for p in (20.0, 40.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.split(":")[0].split()[0] for o in outcomes) == ["conflict", "won"], outcomes
    [won] = [o for o in outcomes if o.startswith("won")]
    [share] = [v.traffic_percent for v in served.models() if v.version == version]
    assert f"won {share:g}" == won
    served.rollback(MODEL)
    assert roles(served) == [("1", "champion")]


def test_canary_at_50_promote_and_rollback_under_load_answer_every_request(
    served: Client, platform_settings: Settings
) -> None:
    """Steady load from three threads through a 50% canary, its rollback, a second canary and
    its promotion, then a switch back to version 1: every request answered 200."""
    canary = new_version(platform_settings, seed=2)
    second = new_version(platform_settings, seed=3)
    with Load(platform_settings) as load:
        assert poll(lambda: load.versions["1"] >= 20, 60), load.versions
        started = served.rollout(MODEL, canary, "canary", canary_percent=50)
        assert started.elapsed_s < 60, started  # a new version: seconds, not a Ray job
        assert aliases(platform_settings) == {"champion": "1", "challenger": canary}
        before = Counter(load.versions)
        assert poll(lambda: answered_since(load, before, ("1", canary)) >= 20, 60), load.versions
        during = load.versions - before
        served.rollback(MODEL)
        assert aliases(platform_settings) == {"champion": "1"}
        served.rollout(MODEL, second, "canary", canary_percent=50)
        served.promote(MODEL)
        assert aliases(platform_settings) == {"champion": second}
        promoted = load.versions[second]
        assert poll(lambda: load.versions[second] >= promoted + 20, 60), load.versions
        switched = served.deploy(MODEL, version="1")
        back = load.versions["1"]
        assert poll(lambda: load.versions["1"] >= back + 20, 60), load.versions
    assert load.failures == [], load.failures[:5]
    assert during["1"] > 0 and during[canary] > 0, during  # both answered during the canary
    assert load.versions[second] > promoted > 0, load.versions
    assert switched.champion == "1" and roles(served) == [("1", "champion")]
    rollouts = MlflowClient(platform_settings.tracking_uri).get_experiment_by_name(
        ROLLOUT_EXPERIMENT
    )
    decisions = MlflowClient(platform_settings.tracking_uri).search_runs(
        [rollouts.experiment_id], filter_string=f"tags.`{TAG_ROLLOUT_DECISION}` = 'promote'"
    )
    assert decisions


def test_canary_takes_its_share_and_feedback_gives_online_accuracy(
    served: Client, http: httpx.Client, platform_settings: Settings
) -> None:
    version = new_version(platform_settings, seed=4)
    result = served.rollout(MODEL, version, "canary", canary_percent=30)
    assert (result.challenger, result.mode, result.challenger_percent) == (version, "canary", 30)
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
    # Replicas report their records every 0.5 s: wait until the feedback is all counted.
    assert poll(lambda: feedback_counted(served, version) == labelled[version], 30), labelled
    listed = {v.version: v for v in served.models()}
    assert listed[version].traffic_percent == 30 and listed["1"].traffic_percent == 70
    assert listed[version].stats.feedback == labelled[version]
    accuracy = listed["1"].stats.online_accuracy
    assert accuracy is not None and accuracy > 0.5
    sticky = {**infer_body(PIXELS[:1], "same-id"), "parameters": {"sticky": True}}
    versions = {http.post(f"/v2/models/{MODEL}/infer", json=sticky).json()["model_version"]
                for _ in range(20)}  # fmt: skip
    assert len(versions) == 1
    served.rollback(MODEL)


def test_shadow_answers_are_recorded_after_the_answer_and_never_returned(
    served: Client, http: httpx.Client, platform_settings: Settings
) -> None:
    version = new_version(platform_settings, seed=6)
    served.rollout(MODEL, version, "shadow")
    for i in range(60):
        answer = http.post(f"/v2/models/{MODEL}/infer", json=infer_body(PIXELS[i : i + 1]))
        assert answer.json()["model_version"] == "1"

    def shadow_version() -> ServedVersion:
        return {v.version: v for v in served.models()}[version]

    poll(lambda: shadow_version().stats.shadow_requests >= 60, 20)
    shadow = shadow_version()
    assert shadow.role == "shadow" and shadow.traffic_percent == 0.0
    assert shadow.stats.shadow_requests >= 60 and shadow.stats.requests == 0
    assert shadow.stats.shadow_agreement is not None
    served.rollback(MODEL)


def test_progressive_rollout_walks_its_steps_on_live_traffic_and_promotes(
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
    version = new_version(platform_settings, seed=7, spec=spec)
    store = FileDocumentStore(Path(platform_settings.storage_root) / "serving")
    rules = store.read().models[MODEL].serve.model_copy(update={"rollout": spec.rollout})
    # The control plane deploys with the version's stored rules; these rules need the service.
    backend = ServeRestBackend(platform_settings.jobs_url, read_ray_auth_token(platform_settings))
    cluster_side = ServingService(store, backend, serve_target(platform_settings))
    cluster_side.deploy(MODEL, version="1", spec=rules)
    with Load(platform_settings, threads=1) as load:
        started = served.rollout(MODEL, version, "progressive", wait=False)
        assert started.challenger_percent == 50.0
        assert store.read().models[MODEL].challenger.progressive.step == 0  # type: ignore[union-attr]
        result = served.drive_rollout(MODEL)  # a controller started afresh: the stored step
    assert load.failures == []
    assert result.decision == "promote", result
    assert aliases(platform_settings) == {"champion": version}
    client = MlflowClient(platform_settings.tracking_uri)
    experiment = client.get_experiment_by_name(ROLLOUT_EXPERIMENT)
    steps = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"attributes.run_name = '{MODEL}-v{version}-progressive'",
    )
    shares = sorted(float(r.data.params["traffic_percent"]) for r in steps)
    assert shares == [50.0, 100.0]
    served.deploy(MODEL, version="1")


class LabelledLoad(Load):
    """Steady load of one-row requests, each followed by feedback with the row's true label."""

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=30, trust_env=False) as c:
            row = 0
            while not self._stop.is_set():
                row = (row + 1) % len(PIXELS)
                request_id = f"labelled-{threading.get_ident()}-{time.monotonic_ns()}"
                body = infer_body(PIXELS[row : row + 1], request_id)
                try:
                    answer = c.post(f"/v2/models/{MODEL}/infer", json=body)
                    told = c.post(
                        f"/v2/models/{MODEL}/feedback",
                        json={"id": request_id, "label": int(DIGITS.target[row])},
                    )
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                    continue
                for response in (answer, told):
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code} {response.text}")
                self.versions[answer.json().get("model_version", "?")] += 1


@pytest.mark.parametrize(
    ("slo", "broken"),
    [
        ({"min_online_accuracy": 0.8, "min_feedback": 10}, "online accuracy"),
        ({"max_p95_latency_ms": 0.001}, "p95 latency"),
    ],
    ids=["accuracy-gate", "latency-gate"],
)
def test_a_progressive_rollout_that_breaks_a_gate_on_live_traffic_rolls_back(
    served: Client, platform_settings: Settings, slo: dict[str, float], broken: str
) -> None:
    """An untrained challenger (right one time in ten) against an accuracy gate fed by live
    feedback, and any challenger against an impossible latency objective: the controller rolls
    each back on its own, the champion keeps answering. Cost: about 30 s each."""
    rollout = {"mode": "progressive", "steps": [50, 100], "step_duration_s": 2,
               "slo": {"min_requests": 10, "max_p95_latency_ms": 5000, **slo}}  # fmt: skip
    spec = CHEAP.model_copy(update={"rollout": CHEAP.rollout.model_validate(rollout)})
    challenger = new_version(platform_settings, seed=13, spec=spec, trained=False)
    store = FileDocumentStore(Path(platform_settings.storage_root) / "serving")
    rules = store.read().models[MODEL].serve.model_copy(update={"rollout": spec.rollout})
    backend = ServeRestBackend(platform_settings.jobs_url, read_ray_auth_token(platform_settings))
    ServingService(store, backend, serve_target(platform_settings)).deploy(MODEL, "1", spec=rules)

    with LabelledLoad(platform_settings, threads=2) as load:
        result = served.rollout(MODEL, challenger, "progressive", wait=True)

    assert load.failures == []
    assert result.decision == "rollback", result
    assert broken in (result.reason or ""), result.reason
    assert load.versions[challenger] > 0  # it did answer live traffic before it was judged
    assert roles(served) == [("1", "champion")]
    assert aliases(platform_settings) == {"champion": "1"}
    served.deploy(MODEL, version="1")  # back to version 1's own rules


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
    table = run_cli(platform_settings, "models", env={"COLUMNS": "80"})
    assert table.returncode == 0 and "champion" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80, table.stdout
    assert "…" not in table.stdout.splitlines()[0], table.stdout  # no header cut
    before = roles(served)
    for args in (
        ("deploy", "no-such-model"),
        ("deploy", MODEL, "--version", "99"),
        ("promote", MODEL),  # no challenger
    ):
        result = run_cli(platform_settings, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert roles(served) == before


SCALING = ServeSpec.model_validate(
    {
        "resources": {"num_cpus": 0.1},
        "autoscaling": {
            "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
            "upscale_delay_s": 1, "downscale_delay_s": 5,
        },
    }
)  # fmt: skip


def test_autoscaling_adds_a_replica_under_load_survives_a_killed_one_and_scales_down(
    served: Client, platform_settings: Settings
) -> None:
    """Load from 6 threads asks for a second replica; one replica is then SIGKILLed under that
    load (HAProxy retries and the other replica answer; the failures are counted and reported);
    without load the deployment goes back to one replica. Cost: about a minute."""
    served.deploy(MODEL, version=new_version(platform_settings, seed=11, spec=SCALING))
    assert replica_pids(platform_settings) and len(replica_pids(platform_settings)) == 1
    with Load(platform_settings, threads=6) as load:
        wait_for(lambda: len(replica_pids(platform_settings)) == 2, 120, "a second replica")
        answered_before_kill = sum(load.versions.values())
        failures_before_kill = len(load.failures)
        os.kill(replica_pids(platform_settings)[0], signal.SIGKILL)
        wait_for(lambda: sum(load.versions.values()) > answered_before_kill + 100, 60, "answers")
        wait_for(lambda: len(replica_pids(platform_settings)) == 2, 120, "the replacement")
    failed = len(load.failures) - failures_before_kill
    answered = sum(load.versions.values())
    print(f"replica killed under load: {failed} failed of {answered + failed} requests")
    assert failures_before_kill == 0, load.failures[:3]
    assert failed <= 0.05 * (answered + failed), load.failures[:5]
    wait_for(lambda: len(replica_pids(platform_settings)) == 1, 120, "scaling down to one")
    served.deploy(MODEL, version="1")


def replica_pids(settings: Settings) -> list[int]:
    """Pids of the running ingress replicas of MODEL, from Serve's REST API."""
    token = read_ray_auth_token(settings)
    answer = httpx.get(
        f"{settings.jobs_url}/api/serve/applications/",
        headers={"Authorization": f"Bearer {token}"}, timeout=10, trust_env=False,
    )  # fmt: skip
    answer.raise_for_status()
    app = answer.json()["applications"][f"model-{MODEL}"]
    replicas = app["deployments"]["ingress"]["replicas"]
    return sorted(int(r["pid"]) for r in replicas if r["state"] == "RUNNING")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    assert poll(condition, timeout_s), f"no {what} within {timeout_s:.0f} s"


def answered_since(load: Load, before: Counter[str], versions: tuple[str, ...]) -> int:
    """The fewest answers any of ``versions`` gave since ``before`` was counted."""
    return min((load.versions - before)[v] for v in versions)


def feedback_counted(client: Client, version: str) -> int:
    """The feedback the statistics actor counts for ``version`` of MODEL."""
    return {v.version: v.stats.feedback for v in client.models()}.get(version, -1)
