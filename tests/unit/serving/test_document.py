"""The serving document's pure changes, and the Serve config derived from it."""

from __future__ import annotations

import pytest

from flywheel.errors import ServeInputError
from flywheel.rollout import ModelRoute, ServeTarget
from flywheel.serving import document as changes
from flywheel.serving.config import (
    INGRESS_DEPLOYMENT,
    ROOT_APP,
    document_to_serve_config,
    model_app_name,
)
from flywheel.serving.document import ServingDocument
from flywheel.specs.serving import ServeSpec

TARGET = ServeTarget(
    tracking_uri="http://127.0.0.1:5000", storage_root="s3://bucket/root", host="127.0.0.1",
    port=8000, max_request_bytes=1024, dashboard_url="http://127.0.0.1:8265",
)  # fmt: skip
SPEC = ServeSpec.model_validate(
    {"rollout": {"canary_percent": 20, "steps": [10, 50, 100]}, "resources": {"num_cpus": 0.5}}
)


def served_v1() -> ServingDocument:
    return changes.deploy(ServingDocument(), "digits", "1", SPEC)


def test_every_change_raises_the_generation_by_one_and_leaves_the_input_alone() -> None:
    empty = ServingDocument()
    first = changes.deploy(empty, "digits", "1", SPEC)
    canary = changes.start_rollout(first, "digits", "2", "canary", None, now_s=100.0)
    promoted = changes.promote(canary, "digits")
    gone = changes.undeploy(promoted, "digits")
    assert [d.generation for d in (empty, first, canary, promoted, gone)] == [0, 1, 2, 3, 4]
    assert empty.models == {} and first.models["digits"].challenger is None
    assert canary.models["digits"].challenger.percent == 20.0  # the model's rollout rules
    assert promoted.models["digits"].champion == "2" and promoted.models["digits"].versions == (
        "2",
    )
    assert gone.models == {}


def test_rollout_modes_set_the_challengers_share() -> None:
    shadow = changes.start_rollout(served_v1(), "digits", "2", "shadow", None, now_s=1.0)
    served = shadow.models["digits"]
    assert served.challenger.role == "shadow" and served.traffic_percent("2") == 0.0
    assert served.traffic_percent("1") == 100.0
    canary = changes.start_rollout(served_v1(), "digits", "2", "canary", 35.0, now_s=1.0)
    assert canary.models["digits"].traffic_percent("1") == 65.0


def test_a_progressive_rollout_keeps_its_step_in_the_document() -> None:
    started = changes.start_rollout(served_v1(), "digits", "2", "progressive", None, now_s=5.0)
    challenger = started.models["digits"].challenger
    assert challenger.percent == 10.0 and challenger.progressive.step == 0
    moved = changes.advance_step(started, "digits", now_s=70.0)
    state = moved.models["digits"].challenger
    assert (state.percent, state.progressive.step, state.progressive.step_started_s) == (50, 1, 70)
    last = changes.advance_step(moved, "digits", now_s=80.0)
    with pytest.raises(ServeInputError, match="last step"):
        changes.advance_step(last, "digits", now_s=90.0)
    reread = ServingDocument.model_validate_json(last.model_dump_json())
    assert reread == last


WRONG = {
    "rollout of an unserved model": lambda d: changes.start_rollout(d, "x", "2", "canary", 5, 0),
    "rollout of the champion": lambda d: changes.start_rollout(d, "digits", "1", "canary", 5, 0),
    "promote without a challenger": lambda d: changes.promote(d, "digits"),
    "rollback without a challenger": lambda d: changes.rollback(d, "digits"),
    "undeploy of an unserved model": lambda d: changes.undeploy(d, "x"),
    "advance without a rollout": lambda d: changes.advance_step(d, "digits", 0),
    "a name that is no URL segment": lambda d: changes.deploy(d, "a/b", "1", SPEC),
}


@pytest.mark.parametrize("change", WRONG.values(), ids=WRONG.keys())
def test_a_wrong_change_is_a_serve_input_error(change) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ServeInputError):
        change(served_v1())


def test_a_newer_writers_keys_are_ignored_when_read_back() -> None:
    text = served_v1().model_dump_json()
    newer = text.replace('"generation":1', '"generation":1,"owner":"control-plane"')
    assert ServingDocument.model_validate_json(newer) == served_v1()


def test_the_serve_config_has_one_app_per_model_and_the_root_app() -> None:
    document = changes.start_rollout(served_v1(), "digits", "2", "canary", 30.0, now_s=1.0)
    config = document_to_serve_config(document, TARGET)
    root, app = config.applications
    assert (root.name, root.route_prefix) == (ROOT_APP, "/")
    assert (app.name, app.route_prefix) == (model_app_name("digits"), "/v2/models/digits")
    assert app.args["tracking_uri"] == TARGET.tracking_uri
    [deployment] = app.deployments
    assert deployment.name == INGRESS_DEPLOYMENT
    assert deployment.ray_actor_options["num_cpus"] == 0.5
    route = ModelRoute.model_validate(deployment.user_config)
    assert (route.champion, route.challenger, route.challenger_percent) == ("1", "2", 30.0)
    assert route.generation == document.generation
    payload = config.payload()
    assert payload["http_options"] == {
        "host": "127.0.0.1",
        "port": 8000,
        "keep_alive_timeout_s": 60,
    }
    assert "num_replicas" not in payload["applications"][1]["deployments"][0]


def test_the_serve_config_holds_no_local_path() -> None:
    local = TARGET.model_copy(update={"storage_root": "s3://b/r"})
    text = str(document_to_serve_config(served_v1(), local).payload())
    assert "/home" not in text and "/tmp" not in text and "file:" not in text


def test_a_traffic_change_alters_only_the_user_config() -> None:
    """Serve restarts replicas when args or resources change; a new share must not do that."""
    canary = changes.start_rollout(served_v1(), "digits", "2", "canary", 10.0, now_s=1.0)
    more = changes.start_rollout(canary, "digits", "2", "canary", 50.0, now_s=1.0)
    before, after = (document_to_serve_config(d, TARGET).applications[1] for d in (canary, more))
    assert before.args == after.args
    assert before.deployments[0].ray_actor_options == after.deployments[0].ray_actor_options
    assert before.deployments[0].user_config != after.deployments[0].user_config


def test_the_route_carries_the_request_log_sample_rate_and_retention() -> None:
    spec = ServeSpec.model_validate({"monitor": {"sample_rate": 0.25, "retention_hours": 12}})
    document = changes.deploy(ServingDocument(), "digits", "1", spec)
    [deployment] = document_to_serve_config(document, TARGET).applications[1].deployments
    route = ModelRoute.model_validate(deployment.user_config)
    assert (route.log_sample_rate, route.log_retention_hours) == (0.25, 12.0)
    default = ModelRoute.model_validate({"model": "digits", "champion": "1"})
    assert (default.log_sample_rate, default.log_retention_hours) == (0.1, 168.0)
