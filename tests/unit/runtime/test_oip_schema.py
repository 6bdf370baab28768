"""The gateway's OpenAPI document: every route's request and response schemas, generated from
the models in ``oip_schema``, agree with what the codec accepts and sends.

The ingress is a Serve deployment (its routes need a running replica), so these tests read the
document FastAPI generates and check the codec against it; the live gateway is fuzzed with
schemathesis in ``tests/integration/test_serving.py``.
"""

from __future__ import annotations

import json
from typing import Any, get_args

import jsonschema
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from flywheel.runtime.serve.ingress import api
from flywheel.runtime.serve.oip import (
    NUMPY_DTYPES,
    OipError,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
)
from flywheel.runtime.serve.oip_schema import Datatype

from .test_oip import INPUTS, OUTPUTS, TWO_INPUTS, body

OPERATIONS = {
    ("get", "/"): ("ModelMetadata", {503}),
    ("get", "/ready"): ("ModelReady", {503}),
    ("get", "/versions/{version}"): ("ModelMetadata", {404}),
    ("get", "/versions/{version}/ready"): ("VersionReady", {404}),
    ("post", "/infer"): ("InferenceResponse", {400, 413, 500, 503}),
    ("post", "/versions/{version}/infer"): ("InferenceResponse", {400, 404, 413, 500}),
    ("post", "/feedback"): ("FeedbackResponse", {400, 404, 413}),
}
# The codec's own test requests (tests/unit/runtime/test_oip.py) and the examples of KServe's
# inference_request schema, with the datatypes flywheel serves.
GOOD_REQUESTS = [
    json.loads(body()),
    json.loads(body(data=[[0, 1, 2, 3], [4, 5, 6, 7]])),
    {
        "id": "42",
        "parameters": {"binary_data_output": True, "priority": 2, "tag": "x"},
        "inputs": [
            {"name": "mask", "shape": [2], "datatype": "INT64", "data": [1, 0]},
            {"name": "pixels", "shape": [2, 4], "datatype": "FP32", "data": [0.5] * 8},
        ],
        "outputs": [{"name": "label", "parameters": {"binary_data": False}}, {"name": "scores"}],
    },
    {
        "id": "42",
        "inputs": [
            {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
            {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True]},
        ],
        "outputs": [{"name": "output0"}],
    },
]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return api.openapi()


def validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator of the component ``name``, its references resolved within the document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_every_route_documents_its_answer_and_its_error_statuses(document: dict[str, Any]) -> None:
    documented = {
        (method, path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert set(documented) == set(OPERATIONS)
    for key, (answer, errors) in OPERATIONS.items():
        responses = documented[key]["responses"]
        ok = responses["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{answer}"}, key
        assert {int(s) for s in responses} - {200} == errors, key
        for status in errors:
            error = responses[str(status)]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}, (key, status)


def test_request_bodies_are_documented(document: dict[str, Any]) -> None:
    for path, model in [
        ("/infer", "InferenceRequest"),
        ("/versions/{version}/infer", "InferenceRequest"),
        ("/feedback", "FeedbackRequest"),
    ]:
        content = document["paths"][path]["post"]["requestBody"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    binary = document["paths"]["/infer"]["post"]["requestBody"]["content"]
    assert binary["application/octet-stream"]["schema"]["format"] == "binary"


def test_the_documented_datatypes_are_those_the_codec_serves() -> None:
    assert set(get_args(Datatype)) == set(NUMPY_DTYPES)


@pytest.mark.parametrize("request_body", GOOD_REQUESTS)
def test_the_codecs_example_requests_are_valid_inference_requests(
    document: dict[str, Any], request_body: dict[str, Any]
) -> None:
    validator(document, "InferenceRequest").validate(request_body)


def test_what_the_codec_refuses_for_its_form_the_schema_refuses_too(
    document: dict[str, Any],
) -> None:
    check = validator(document, "InferenceRequest")
    for bad in [{}, {"inputs": []}, {"inputs": [{"name": "x"}]}, {"id": 3, "inputs": []}]:
        assert not check.is_valid(bad), bad
    assert not validator(document, "FeedbackRequest").is_valid({"id": "x"})
    assert not validator(document, "FeedbackRequest").is_valid({"id": "", "label": 3})


def test_what_the_codec_answers_is_valid_against_the_response_schemas(
    document: dict[str, Any],
) -> None:
    parsed = parse_infer_request(body(), None, INPUTS)
    scores = np.arange(6, dtype=np.float32).reshape(2, 3)
    answer = encode_infer_response("m", "1", "r", parsed, OUTPUTS, [scores])
    assert answer.header_length is None
    validator(document, "InferenceResponse").validate(json.loads(answer.body))
    metadata = model_metadata("m", ["1", "2"], TWO_INPUTS, OUTPUTS)
    validator(document, "ModelMetadata").validate(metadata)


_fuzz = settings(max_examples=75, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_documented_and_undocumented_inference_bodies_parse_or_get_a_4xx(
    document: dict[str, Any], mode: str
) -> None:
    """What schemathesis sends the live gateway, given to the codec: never anything but a 4xx.
    (A name that is not a string was once a TypeError: a 500.)"""
    schema = schemathesis.openapi.from_dict(document)
    operation = schema["/infer"]["POST"]
    mode_ = schemathesis.GenerationMode(mode)

    @given(case=operation.as_strategy(generation_mode=mode_, media_type="application/json"))
    @_fuzz
    def check(case: schemathesis.Case) -> None:
        payload = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
        for signature in (INPUTS, TWO_INPUTS):
            try:
                parse_infer_request(payload, None, signature)
            except OipError as e:
                assert 400 <= e.status < 500

    check()
