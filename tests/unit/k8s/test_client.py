"""The kubernetes-client adapter against a small HTTP server that speaks the API's paths.

No API server runs here, so this stands in for one over real HTTP: the kubernetes client's own
request building (paths, verbs, the merge-patch content type) and the adapter's translation of
its errors are what is tested; the server only stores the documents it is sent.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from kubernetes import client

from flywheel.errors import JobNotFoundError, K8sError
from flywheel.k8s.client import KubernetesApi

_PATH = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?$"
)


class FakeApiServer(BaseHTTPRequestHandler):
    """Stores custom objects by path; refuses a RayJob named ``refused`` with 422 and an object
    that exists with 409; a merge patch merges ``spec`` and the labels."""

    objects: ClassVar[dict[tuple[str, str, str], dict[str, Any]]] = {}
    patches: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        ns, plural, name = self._where()
        if name is None:
            items = [o for (n, p, _), o in self.objects.items() if (n, p) == (ns, plural)]
            return self._reply(200, {"items": items})
        found = self.objects.get((ns, plural, name))
        return self._reply(200, found) if found else self._reply(404, {"reason": "NotFound"})

    def do_POST(self) -> None:
        ns, plural, _ = self._where()
        body = self._body()
        if body["metadata"]["name"] == "refused":
            return self._reply(422, {"reason": "Invalid"})
        if (ns, plural, body["metadata"]["name"]) in self.objects:
            return self._reply(409, {"reason": "AlreadyExists"})
        self.objects[(ns, plural, body["metadata"]["name"])] = body
        return self._reply(201, body)

    def do_PATCH(self) -> None:
        ns, plural, name = self._where()
        self.patches.append(self.headers["Content-Type"])
        found = self.objects.get((ns, plural, name or ""))
        if found is None:
            return self._reply(404, {"reason": "NotFound"})
        patch = self._body()
        found["spec"].update(patch.get("spec", {}))
        labels = patch.get("metadata", {}).get("labels", {})
        found["metadata"].setdefault("labels", {}).update(labels)
        return self._reply(200, found)

    def do_DELETE(self) -> None:
        ns, plural, name = self._where()
        found = self.objects.pop((ns, plural, name or ""), None)
        return self._reply(200, {}) if found else self._reply(404, {"reason": "NotFound"})

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _where(self) -> tuple[str, str, str | None]:
        match = _PATH.match(self.path.split("?")[0])
        assert match, self.path
        return match["ns"], match["plural"], match["name"]

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))  # type: ignore[no-any-return]

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api() -> Iterator[KubernetesApi]:
    FakeApiServer.objects, FakeApiServer.patches = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_port}")
    with client.ApiClient(configuration) as api_client:
        yield KubernetesApi(client.CustomObjectsApi(api_client))
    server.shutdown()
    server.server_close()
    thread.join()


def rayjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"suspend": True},
    }


def test_create_read_suspend_and_delete_a_rayjob(api: KubernetesApi) -> None:
    api.create_rayjob("team", rayjob("job-1"))
    assert api.get_rayjob("team", "job-1") == rayjob("job-1")
    api.patch_rayjob_suspend("team", "job-1", False)
    assert api.get_rayjob("team", "job-1")["spec"]["suspend"] is False  # type: ignore[index]
    assert FakeApiServer.patches == ["application/merge-patch+json"]
    assert api.delete_rayjob("team", "job-1") is True
    assert api.delete_rayjob("team", "job-1") is False
    assert api.get_rayjob("team", "job-1") is None


def test_a_refused_rayjob_is_a_k8s_error_naming_it(api: KubernetesApi) -> None:
    with pytest.raises(K8sError, match="cannot create RayJob team/refused: 422"):
        api.create_rayjob("team", rayjob("refused"))


def test_suspending_a_missing_rayjob_is_job_not_found(api: KubernetesApi) -> None:
    with pytest.raises(JobNotFoundError):
        api.patch_rayjob_suspend("team", "nope", True)


def test_the_workload_of_a_rayjob_is_found_by_its_owner(api: KubernetesApi) -> None:
    def workload(name: str, owner: str) -> dict[str, Any]:
        owners = [{"apiVersion": "ray.io/v1", "kind": "RayJob", "name": owner, "uid": "u"}]
        return {"metadata": {"name": name, "ownerReferences": owners}, "status": {}}

    FakeApiServer.objects[("team", "workloads", "w1")] = workload("w1", "other")
    FakeApiServer.objects[("team", "workloads", "w2")] = workload("w2", "job-1")
    assert api.workload_of("team", "job-1")["metadata"]["name"] == "w2"  # type: ignore[index]
    assert api.workload_of("team", "job-2") is None


def test_stop_labels_and_suspends_and_list_finds_the_rayjobs(api: KubernetesApi) -> None:
    api.create_rayjob("team", rayjob("job-1") | {"spec": {"suspend": False}})
    api.stop_rayjob("team", "job-1")
    (listed,) = api.list_rayjobs("team")
    assert listed["spec"]["suspend"] is True
    assert listed["metadata"]["labels"] == {"flywheel.dev/stopped": "true"}
    assert api.list_rayjobs("other") == []
    with pytest.raises(JobNotFoundError):
        api.stop_rayjob("team", "nope")


def test_apply_creates_a_rayservice_then_patches_it(api: KubernetesApi) -> None:
    service = {"apiVersion": "ray.io/v1", "kind": "RayService",
               "metadata": {"name": "flywheel-serving", "namespace": "flywheel"},
               "spec": {"serveConfigV2": "applications: []\n"}}  # fmt: skip
    assert api.get_rayservice("flywheel", "flywheel-serving") is None
    api.apply_rayservice("flywheel", service)
    changed = service | {"spec": {"serveConfigV2": "applications: [x]\n"}}
    api.apply_rayservice("flywheel", changed)
    stored = api.get_rayservice("flywheel", "flywheel-serving")
    assert stored is not None and stored["spec"] == changed["spec"]
    assert FakeApiServer.patches == ["application/merge-patch+json"]
