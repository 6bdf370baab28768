"""Open Inference Protocol payloads: every bad request is a 4xx with a message, never a crash."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flywheel.runtime.serve.oip import (
    OipError,
    infer_response,
    model_metadata,
    parse_feedback,
    parse_infer_request,
)
from flywheel.tracking import TensorInfo

INPUTS = (TensorInfo("input-0", "float32", (-1, 4)),)
OUTPUTS = (TensorInfo("output-0", "float32", (-1, 3)),)


def body(**tensor: object) -> bytes:
    base = {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}
    return json.dumps({"id": "r", "inputs": [{**base, **tensor}]}).encode()


def test_a_good_request_becomes_an_array_of_its_shape() -> None:
    parsed = parse_infer_request(body(), INPUTS)
    assert parsed.request_id == "r"
    assert parsed.features.shape == (2, 4) and parsed.features.dtype == np.float32


def test_nested_data_is_accepted_row_major() -> None:
    parsed = parse_infer_request(body(data=[[0, 1, 2, 3], [4, 5, 6, 7]]), INPUTS)
    assert parsed.features[1, 0] == 4


BAD = {
    "not JSON": b"{nope",
    "not UTF-8": b"\xff\xfe",
    "not an object": b"[]",
    "no inputs": b'{"inputs": []}',
    "two inputs": json.dumps({"inputs": [{}, {}]}).encode(),
    "id not a string": json.dumps({"id": 3, "inputs": [{}]}).encode(),
    "wrong name": body(name="x"),
    "wrong datatype": body(datatype="INT64"),
    "shape of wrong rank": body(shape=[8]),
    "shape of wrong width": body(shape=[4, 2]),
    "negative shape": body(shape=[-2, 4]),
    "no rows": body(shape=[0, 4], data=[]),
    "too few values": body(data=[1, 2, 3]),
    "strings as data": body(data=["a"] * 8),
    "data not a list": body(data="abc"),
}


@pytest.mark.parametrize("payload", BAD.values(), ids=BAD.keys())
def test_each_bad_request_is_a_400(payload: bytes) -> None:
    with pytest.raises(OipError) as caught:
        parse_infer_request(payload, INPUTS)
    assert caught.value.status == 400
    assert set(caught.value.body()) == {"error"} and caught.value.message


@given(st.binary(max_size=200))
def test_any_bytes_either_parse_or_raise_a_4xx(payload: bytes) -> None:
    try:
        parse_infer_request(payload, INPUTS)
    except OipError as e:
        assert 400 <= e.status < 500


def test_the_response_names_the_version_and_flattens_the_output() -> None:
    answer = infer_response("m", "3", "r", OUTPUTS, np.ones((2, 3), dtype=np.float32))
    assert answer["model_version"] == "3" and answer["id"] == "r"
    assert answer["outputs"] == [
        {"name": "output-0", "datatype": "FP32", "shape": [2, 3], "data": [1.0] * 6}
    ]


def test_metadata_lists_versions_and_tensors() -> None:
    metadata = model_metadata("m", ["1", "2"], INPUTS, OUTPUTS)
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]


def test_feedback_needs_an_id_and_a_label() -> None:
    assert parse_feedback(b'{"id": "r", "label": 3}') == ("r", 3)
    for payload in (b'{"label": 3}', b'{"id": "r"}', b'{"id": "r", "label": true}', b"[]"):
        with pytest.raises(OipError):
            parse_feedback(payload)
