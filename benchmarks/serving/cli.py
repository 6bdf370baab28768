"""Online inference: the digits model served by flywheel vs one FastAPI + uvicorn process vs
`mlflow models serve`.

A private embedded platform (temporary home, free ports) trains digits through its `serve`
section, which deploys version 1 (batching on); version 2 is the same weights with batching off.
Each server then takes closed-loop load of one-row requests at each concurrency for
``--duration-s`` seconds after a 1 s warm-up; the load generator runs on the same machine.
flywheel and the FastAPI peer get the same OIP v2 request body; mlflow gets its own format
(``{"inputs": [[...]]}``) for the same row.

    .venv/bin/python -m benchmarks.serving [--duration-s 5] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from benchmarks.serving.load import LoadResult, run_load
from flywheel.client import Client
from flywheel.local import EmbeddedPlatform, free_ports
from flywheel.settings import Settings
from flywheel.specs.serving import ServeSpec
from flywheel.tracking import TAG_SERVE_SPEC

REPO = Path(__file__).resolve().parents[2]
MODEL = "digits-bench"
PEER = Path(__file__).parent / "peer_fastapi.py"
SERVE_SECTION = """
serve:
  batching: {enabled: true, max_batch_size: 32, batch_wait_timeout_s: 0.002}
  resources: {num_cpus: 0.5}
"""


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args(argv)
    row = (load_digits().data[:1] / 16.0).astype("float32")
    oip = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32",
                                  "data": row.reshape(-1).tolist()}]}).encode()  # fmt: skip
    native = json.dumps({"inputs": row.tolist()}).encode()
    results: dict[str, list[LoadResult]] = {}
    with platform() as settings:
        client = Client(settings)
        batched = deploy_digits(client, settings)
        url = f"{settings.serve_url}/v2/models/{MODEL}/infer"
        results["flywheel, batching on"] = measure(url, oip, args)
        client.deploy(MODEL, version=unbatched_copy(settings, batched))
        results["flywheel, batching off"] = measure(url, oip, args)
        bin_dir = str(Path(sys.executable).parent)  # mlflow starts `uvicorn` from PATH
        env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri,
               "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}  # fmt: skip
        model_uri = f"models:/{MODEL}/{batched}"
        with server([sys.executable, str(PEER), model_uri, "{port}"], env, "/docs") as base:
            results["FastAPI + uvicorn (1 process)"] = measure(
                f"{base}/v2/models/m/infer", oip, args
            )
        mlflow = [
            str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model_uri,
            "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}", "-w", "1",
        ]  # fmt: skip
        with server(mlflow, env, "/ping") as base:
            results["mlflow models serve"] = measure(f"{base}/invocations", native, args)
        client.undeploy(MODEL)
    print(markdown(results, args.duration_s))


def measure(url: str, body: bytes, args: argparse.Namespace) -> list[LoadResult]:
    measured = [run_load(url, body, c, args.duration_s) for c in args.concurrency]
    for result in measured:
        print(f"  {url} c={result.concurrency}: {result.requests_per_s:.0f} req/s", file=sys.stderr)
    return measured


def deploy_digits(client: Client, settings: Settings) -> str:
    """Train digits (3 epochs, 1 worker) through an experiment whose serve section deploys it."""
    with tempfile.TemporaryDirectory(prefix="fw-serving-bench-") as folder:
        shutil.copytree(REPO / "experiments" / "digits", Path(folder) / "digits")
        spec = Path(folder) / "digits" / "train.yaml"
        text = spec.read_text().replace("epochs: 30", "epochs: 3")
        text = text.replace("num_workers: 2", "num_workers: 1").replace("digits-mlp", MODEL)
        spec.write_text(text + SERVE_SECTION)
        job_id = client.submit(spec)
    final = list(client.follow(job_id, poll_s=2.0))[-1].job
    if final.state != "SUCCEEDED":
        raise SystemExit(f"training job {job_id} {final.state}:\n{client.logs(job_id)[-2000:]}")
    [served] = client.models()
    return served.version


def unbatched_copy(settings: Settings, version: str) -> str:
    """The same weights registered again, tagged to be served without batching."""
    registry = MlflowClient(settings.tracking_uri)
    copy = registry.copy_model_version(f"models:/{MODEL}/{version}", MODEL)
    stored = registry.get_model_version(MODEL, version).tags[TAG_SERVE_SPEC]
    spec = ServeSpec.model_validate_json(stored)
    unbatched = spec.model_copy(
        update={"batching": spec.batching.model_copy(update={"enabled": False})}
    )
    registry.set_model_version_tag(MODEL, copy.version, TAG_SERVE_SPEC, unbatched.model_dump_json())
    return str(copy.version)


@contextmanager
def platform() -> Iterator[Settings]:
    """A private embedded platform on free ports under a temporary home; always stopped."""
    home = Path(tempfile.mkdtemp(prefix="fwb-"))
    names = ("ray_dashboard_port", "ray_gcs_port", "ray_client_port", "ray_agent_port",
             "mlflow_port", "serve_port")  # fmt: skip
    settings = Settings(home=home, host="127.0.0.1", **dict(zip(names, free_ports(6), strict=True)))
    embedded = EmbeddedPlatform(settings)
    try:
        embedded.up()
        yield settings
    finally:
        embedded.down()
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def server(command: list[str], env: dict[str, str], health: str) -> Iterator[str]:
    """Start a peer server on a free port, wait until ``health`` answers, stop it after."""
    port = free_ports(1)[0]
    argv = [part.replace("{port}", str(port)) for part in command]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}{health}", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"{argv[:3]} did not answer {health} in 120 s")
        yield base
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def markdown(results: dict[str, list[LoadResult]], duration_s: float) -> str:
    """One row per server and concurrency; the ratio is to flywheel with batching on."""
    reference = {r.concurrency: r.requests_per_s for r in results["flywheel, batching on"]}
    lines = [
        f"Closed-loop load, one-row requests, {duration_s:g} s per level after a 1 s warm-up.",
        "",
        "| server | concurrency | requests/s | p50 ms | p99 ms | failed | req/s vs flywheel |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, measured in results.items():
        for r in measured:
            ratio = r.requests_per_s / reference[r.concurrency] if reference[r.concurrency] else 0.0
            lines.append(
                f"| {name} | {r.concurrency} | {r.requests_per_s:.0f} | {r.p50_ms:.1f} | "
                f"{r.p99_ms:.1f} | {r.failures} | {ratio:.2f}x |"
            )
    return "\n".join(lines)
