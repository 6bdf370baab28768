"""Online inference: flywheel vs plain Serve (Python proxy, HAProxy) vs one FastAPI + uvicorn
process vs `mlflow models serve`, all in one run, with the load generator's own ceiling.

Every server answers the same model (see :mod:`benchmarks.serving.model`) and, except mlflow,
the same OIP v2 request; mlflow gets its own format (``{"inputs": [[...]]}``) for the same row.
The load generator (:mod:`benchmarks.serving.load`) runs in its own process for each
measurement; the trivial responder (:mod:`benchmarks.serving.responder`) measures its ceiling.
Each platform is a private embedded one (temporary home, free ports, 127.0.0.1), started for its
servers and stopped after, one at a time: plain Serve behind Serve's Python proxy, plain Serve
behind HAProxy (its own platform: flywheel's serving operations state every application and
would remove it), then flywheel behind HAProxy (the default) with batching off, on, and with a
10 % canary of a second version.

    python -m benchmarks.serving [--duration-s 5] [--concurrency 1 8 32] [--only PEER ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from benchmarks.serving import model, report, servers
from benchmarks.serving.load import LoadResult, LoadSpec, run_load
from flywheel.client import Client
from flywheel.local import free_ports
from flywheel.settings import Settings
from flywheel.specs.serving import BatchingSpec, MonitorSpec, ServeResourcesSpec, ServeSpec
from flywheel.tracking import TAG_SERVE_SPEC

MODEL = "digits-bench"
OIP_PATH = "/v2/models/{model}/infer"
#: ``--only`` names -> the table's names, in the order they run.
PEERS = {
    "responder": report.CEILING,
    "fastapi": report.FASTAPI,
    "mlflow": report.MLFLOW,
    "serve-proxy": report.SERVE_PROXY,
    "serve-haproxy": report.SERVE_HAPROXY,
    "flywheel-off": report.FLYWHEEL,
    "flywheel-on": report.FLYWHEEL_BATCHED,
    "flywheel-canary": report.FLYWHEEL_CANARY,
    "flywheel-log-off": report.FLYWHEEL_LOG_OFF,
    "flywheel-log-all": report.FLYWHEEL_LOG_ALL,
}
#: Measured only when named with ``--only``: the request log's cost, a table of its own.
OPT_IN = {"flywheel-log-off", "flywheel-log-all"}
FLYWHEEL_KEYS = {"flywheel-off", "flywheel-on", "flywheel-canary", *OPT_IN}
BATCHING_ON = BatchingSpec(enabled=True, max_batch_size=32, batch_wait_timeout_s=0.002)
CANARY_PERCENT = 10.0

Measure = Callable[[int, str, bytes], list[LoadResult]]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration-s", type=float, default=5.0, help="measured seconds per level")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--settle-s", type=float, default=5.0,
                        help="idle seconds after a server first answers, before its first level: "
                        "the aftermath of a start or deploy is not measured")  # fmt: skip
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--only", nargs="+", choices=list(PEERS), metavar="PEER",
                        help=f"measure only these ({', '.join(PEERS)}); the generator's ceiling "
                        "(responder) is always measured")  # fmt: skip
    args = parser.parse_args(argv)
    selected = {"responder", *(args.only or set(PEERS) - OPT_IN)}
    # MLflow prints a link to every run it ends (registering, flywheel's deploy records) on
    # stdout, where the table goes.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    print(f"python -m benchmarks.serving {' '.join(argv)}".rstrip(), file=sys.stderr)
    results: dict[str, list[LoadResult]] = {}

    def measure(port: int, path: str, body: bytes) -> list[LoadResult]:
        time.sleep(args.settle_s)  # every server alike: not a timing assertion
        measured = []
        for concurrency in args.concurrency:
            spec = LoadSpec("127.0.0.1", port, path, body, concurrency, args.duration_s,
                            args.warmup_s)  # fmt: skip
            result = run_load(spec)
            cpu = result.generator_cpu_percent
            print(f"  :{port}{path} c={concurrency}: {result.requests_per_s:.0f} req/s, "
                  f"generator CPU {cpu:.0f} %", file=sys.stderr)  # fmt: skip
            measured.append(result)
        return measured

    with tempfile.TemporaryDirectory(prefix="fwb-model-") as folder:
        saved = Path(folder) / "model"
        model.train_and_save(saved)
        operations = run_selected(selected, saved, measure, results)
    ordered = {PEERS[key]: results[PEERS[key]] for key in PEERS if PEERS[key] in results}
    print(report.markdown(ordered, args.duration_s, args.warmup_s, args.settle_s))
    print()
    print("\n".join(report.verdicts(ordered)))
    if operations:
        print()
        print(report.operations_markdown(operations))


def run_selected(
    selected: set[str], saved: Path, measure: Measure, results: dict[str, list[LoadResult]]
) -> list[tuple[str, float]]:
    """Start each selected server in turn, measure it, stop it; return how long each flywheel
    serving operation took (seconds, as the client waited for it)."""
    row = model.first_row()
    oip = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32",
                                  "data": row.reshape(-1).tolist()}]}).encode()  # fmt: skip
    path = OIP_PATH.format(model="m")
    python = sys.executable
    if "responder" in selected:
        port = free_ports(1)[0]
        argv = [python, "-m", "benchmarks.serving.responder", str(port)]
        with servers.process(argv, servers.answers(f"http://127.0.0.1:{port}{path}", oip)):
            results[report.CEILING] = measure(port, path, oip)
    if "fastapi" in selected:
        port = free_ports(1)[0]
        argv = [python, "-m", "benchmarks.serving.peer_fastapi", str(saved), str(port)]
        with servers.process(argv, servers.answers(f"http://127.0.0.1:{port}{path}", oip)):
            results[report.FASTAPI] = measure(port, path, oip)
    if "mlflow" in selected:
        results[report.MLFLOW] = _mlflow_serve(
            saved, json.dumps({"inputs": row.tolist()}).encode(), measure
        )
    for key, direct_ingress in (("serve-proxy", False), ("serve-haproxy", True)):
        if key in selected:
            with servers.platform(direct_ingress) as settings:
                servers.deploy_plain_serve(settings, saved)
                url = f"{settings.serve_url}{path}"
                servers.until(servers.answers(url, oip), f"{url} to answer")
                results[PEERS[key]] = measure(settings.serve_port, path, oip)
    operations: list[tuple[str, float]] = []
    if selected & FLYWHEEL_KEYS:
        with servers.platform(direct_ingress=True) as settings:
            _flywheel(settings, saved, selected, oip, measure, results, operations)
    return operations


def _mlflow_serve(saved: Path, body: bytes, measure: Measure) -> list[LoadResult]:
    """`mlflow models serve --env-manager local -w 1` (it starts `uvicorn` from PATH)."""
    port = free_ports(1)[0]
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    argv = [
        str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", str(saved), "--env-manager",
        "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1",
    ]  # fmt: skip
    ready = servers.answers(f"http://127.0.0.1:{port}/invocations", body)
    with servers.process(argv, ready, env):
        return measure(port, "/invocations", body)


def _flywheel(
    settings: Settings, saved: Path, selected: set[str], oip: bytes, measure: Measure,
    results: dict[str, list[LoadResult]], operations: list[tuple[str, float]],
) -> None:  # fmt: skip
    """Batching off, batching on, then off with a 10 % canary of another version (the platform's
    stop ends the deployment). Each serving operation is timed as the client waits for it."""
    client = Client(settings)
    off, on, canary, log_off, log_all = _register(settings, saved)
    path = OIP_PATH.format(model=MODEL)
    ready = servers.answers(f"{settings.serve_url}{path}", oip)

    def timed(what: str, operation: Callable[[], object]) -> None:
        started_s = time.perf_counter()
        operation()
        operations.append((what, time.perf_counter() - started_s))

    steps = [
        ("flywheel-off", [("deploy", lambda: client.deploy(MODEL, version=off))]),
        ("flywheel-on", [("deploy (version switch)", lambda: client.deploy(MODEL, version=on))]),
        ("flywheel-canary", [
            ("deploy (version switch)", lambda: client.deploy(MODEL, version=off)),
            ("rollout canary", lambda: client.rollout(MODEL, canary, "canary", CANARY_PERCENT)),
        ]),
        ("flywheel-log-off", [("deploy (log off)", lambda: client.deploy(MODEL, version=log_off))]),
        ("flywheel-log-all", [("deploy (log all)", lambda: client.deploy(MODEL, version=log_all))]),
    ]  # fmt: skip
    for key, changes in steps:
        if key in selected:
            for what, change in changes:
                timed(what if operations else f"{what}, Serve's first start", change)
            servers.until(ready, f"{MODEL} to answer")
            results[PEERS[key]] = measure(settings.serve_port, path, oip)


def _register(settings: Settings, saved: Path) -> tuple[str, str, str, str, str]:
    """Register the saved model folder as five versions: batching off, on, off again (the
    canary), then the request log off and logging every request (batching off), each tagged
    with its serving settings. Same files, so the same weights."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment("benchmarks/serving")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(saved), "model")
    first = mlflow.register_model(f"runs:/{run.info.run_id}/model", MODEL).version
    registry = MlflowClient(settings.tracking_uri)
    source = f"models:/{MODEL}/{first}"
    versions = [
        str(first),
        *(str(registry.copy_model_version(source, MODEL).version) for _ in "abcd"),
    ]
    resources = ServeResourcesSpec(num_cpus=servers.REPLICA_CPUS)
    off = BatchingSpec(enabled=False)
    serving = [
        ServeSpec(batching=off, resources=resources),
        ServeSpec(batching=BATCHING_ON, resources=resources),
        ServeSpec(batching=off, resources=resources),
        ServeSpec(batching=off, resources=resources, monitor=MonitorSpec(sample_rate=0.0)),
        ServeSpec(batching=off, resources=resources, monitor=MonitorSpec(sample_rate=1.0)),
    ]
    for version, spec in zip(versions, serving, strict=True):
        registry.set_model_version_tag(MODEL, version, TAG_SERVE_SPEC, spec.model_dump_json())
    first, on, canary, log_off, log_all = versions
    return first, on, canary, log_off, log_all
