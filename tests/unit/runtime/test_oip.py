"""Open Inference Protocol payloads: every bad request is a 4xx with a message, never a crash;
binary tensors are read and written exactly as tritonclient's own encoders write and read them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import given
from hypothesis import strategies as st

from flywheel.runtime.serve.oip import (
    HEADER_LENGTH,
    InferRequest,
    ModelOutputError,
    OipError,
    RequestedOutput,
    encode_infer_response,
    model_metadata,
    parse_feedback,
    parse_infer_request,
    server_metadata,
)
from flywheel.tracking import TensorInfo

INPUTS = (TensorInfo("input-0", "float32", (-1, 4)),)
OUTPUTS = (TensorInfo("output-0", "float32", (-1, 3)),)
TWO_INPUTS = (TensorInfo("pixels", "float32", (-1, 4)), TensorInfo("mask", "int64", (-1,)))
TWO_OUTPUTS = (TensorInfo("scores", "float32", (-1, 3)), TensorInfo("label", "int64", (-1,)))


def body(**tensor: object) -> bytes:
    base = {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}
    return json.dumps({"id": "r", "inputs": [{**base, **tensor}]}).encode()


def parse(payload: bytes, inputs: tuple[TensorInfo, ...] = INPUTS) -> InferRequest:
    return parse_infer_request(payload, None, inputs)


def test_a_good_request_becomes_an_array_of_its_shape() -> None:
    parsed = parse(body())
    assert parsed.request_id == "r" and parsed.rows == 2
    [features] = parsed.inputs
    assert features.shape == (2, 4) and features.dtype == np.float32


def test_nested_data_is_accepted_row_major() -> None:
    [features] = parse(body(data=[[0, 1, 2, 3], [4, 5, 6, 7]])).inputs
    assert features[1, 0] == 4


def test_several_inputs_come_back_in_the_signature_order_whatever_order_they_are_sent_in() -> None:
    payload = json.dumps(
        {
            "inputs": [
                {"name": "mask", "shape": [2], "datatype": "INT64", "data": [1, 0]},
                {"name": "pixels", "shape": [2, 4], "datatype": "FP32", "data": [0.5] * 8},
            ]
        }
    ).encode()
    pixels, mask = parse(payload, TWO_INPUTS).inputs
    assert pixels.shape == (2, 4) and mask.tolist() == [1, 0] and mask.dtype == np.int64


def test_request_parameters_and_requested_outputs_are_kept() -> None:
    payload = json.dumps(
        {
            "inputs": json.loads(body())["inputs"],
            "parameters": {"binary_data_output": True, "priority": 2, "tag": "x"},
            "outputs": [
                {"name": "label", "parameters": {"binary_data": False}},
                {"name": "scores"},
            ],
        }
    ).encode()
    parsed = parse(payload)
    assert parsed.binary_output is True
    assert dict(parsed.parameters) == {"binary_data_output": True, "priority": 2, "tag": "x"}
    assert parsed.outputs == (RequestedOutput("label", False), RequestedOutput("scores", None))


def nan_body() -> bytes:
    return b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", ' + (
        b'"data": [NaN, 1, 2, 3]}]}'
    )


BAD = {
    "not JSON": b"{nope",
    "not UTF-8": b"\xff\xfe",
    "not an object": b"[]",
    "no inputs": b'{"inputs": []}',
    "an input twice": json.dumps({"inputs": json.loads(body())["inputs"] * 2}).encode(),
    "an input not an object": b'{"inputs": [3]}',
    "id not a string": json.dumps({"id": 3, "inputs": [{}]}).encode(),
    "wrong name": body(name="x"),
    "wrong datatype": body(datatype="INT64"),
    "unknown datatype": body(datatype="FP8"),
    "shape of wrong rank": body(shape=[8]),
    "shape of wrong width": body(shape=[4, 2]),
    "negative shape": body(shape=[-2, 4]),
    "shape of floats": body(shape=[2.0, 4]),
    "no rows": body(shape=[0, 4], data=[]),
    "too few values": body(data=[1, 2, 3]),
    "too many values": body(data=list(range(12))),
    "ragged data": body(data=[[1, 2, 3, 4], [5, 6]]),
    "strings as data": body(data=["a"] * 8),
    "numbers as strings": body(data=["1.5"] * 8),
    "nulls as data": body(data=[None] * 8),
    "objects as data": body(data=[{}] * 8),
    "data not a list": body(data="abc"),
    "NaN": nan_body(),
    "Infinity": nan_body().replace(b"NaN", b"Infinity"),
    "-Infinity": nan_body().replace(b"NaN", b"-Infinity"),
    "overflows FP32": body(data=[1e39] * 8),
    "parameters not an object": body(parameters=[1]),
    "parameter a list": json.dumps({"inputs": [], "parameters": {"a": [1]}}).encode(),
    "binary_data_output not a bool": json.dumps(
        {"inputs": json.loads(body())["inputs"], "parameters": {"binary_data_output": "yes"}}
    ).encode(),
    "binary size without binary data": body(data=None, parameters={"binary_data_size": 32}),
    "binary size and data": body(parameters={"binary_data_size": 0}),
    "outputs not a list": json.dumps({"inputs": [], "outputs": {}}).encode(),
    "output without a name": json.dumps(
        {"inputs": json.loads(body())["inputs"], "outputs": [{}]}
    ).encode(),
    "output asked twice": json.dumps(
        {"inputs": json.loads(body())["inputs"], "outputs": [{"name": "a"}, {"name": "a"}]}
    ).encode(),
    "classification": json.dumps(
        {
            "inputs": json.loads(body())["inputs"],
            "outputs": [{"name": "output-0", "parameters": {"classification": 2}}],
        }
    ).encode(),
}


@pytest.mark.parametrize("payload", BAD.values(), ids=BAD.keys())
def test_each_bad_request_is_a_400(payload: bytes) -> None:
    with pytest.raises(OipError) as caught:
        parse(payload)
    assert caught.value.status == 400
    assert set(caught.value.body()) == {"error"} and caught.value.message


def test_a_missing_input_and_out_of_range_integers_are_400s() -> None:
    only_pixels = json.dumps(
        {"inputs": [{"name": "pixels", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]}
    ).encode()
    too_big = json.dumps(
        {
            "inputs": [
                {"name": "pixels", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4},
                {"name": "mask", "shape": [1], "datatype": "INT64", "data": [2**70]},
            ]
        }
    ).encode()
    fractions = too_big.replace(str(2**70).encode(), b"1.5")
    for payload in (only_pixels, too_big, fractions):
        with pytest.raises(OipError) as caught:
            parse(payload, TWO_INPUTS)
        assert caught.value.status == 400, payload


@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(-5, 300).map(str)))
def test_any_bytes_either_parse_or_raise_a_4xx(payload: bytes, header_length: str | None) -> None:
    try:
        parse_infer_request(payload, header_length, INPUTS)
    except OipError as e:
        assert 400 <= e.status < 500


def triton_request(
    arrays: dict[str, np.ndarray], binary: bool = True, **options: object
) -> tuple[bytes, str | None]:
    """A request body exactly as tritonclient writes it, with its header length."""
    tensors = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), triton.np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    payload, json_size = triton.InferenceServerClient.generate_request_body(tensors, **options)
    return payload, None if json_size is None else str(json_size)


def test_tritonclient_binary_inputs_decode_to_the_same_arrays() -> None:
    pixels = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    mask = np.array([7, -1, 2**40], dtype=np.int64)
    payload, header_length = triton_request({"mask": mask, "pixels": pixels}, request_id="b")
    assert header_length is not None  # the default: a binary body
    parsed = parse_infer_request(payload, header_length, TWO_INPUTS)
    assert parsed.request_id == "b" and parsed.binary_output is True  # no outputs named
    np.testing.assert_array_equal(parsed.inputs[0], pixels)
    np.testing.assert_array_equal(parsed.inputs[1], mask)


def test_tritonclient_json_inputs_decode_too() -> None:
    pixels = np.arange(8, dtype=np.float32).reshape(2, 4)
    payload, header_length = triton_request({"input-0": pixels}, binary=False)
    assert header_length is None
    np.testing.assert_array_equal(parse_infer_request(payload, None, INPUTS).inputs[0], pixels)


def test_binary_inputs_with_nan_extra_bytes_or_a_bad_header_length_are_400s() -> None:
    pixels = np.ones((1, 4), dtype=np.float32)
    payload, header_length = triton_request({"input-0": pixels})
    assert header_length is not None
    nan = np.array([[np.nan, 1, 1, 1]], dtype=np.float32)
    cases = [
        triton_request({"input-0": nan}),
        (payload + b"\0\0\0\0", header_length),
        (payload[:-1], header_length),
        (payload, str(len(payload) + 1)),
        (payload, "-3"),
        (payload, "twelve"),
    ]
    for bad, length in cases:
        with pytest.raises(OipError) as caught:
            parse_infer_request(bad, length, INPUTS)
        assert caught.value.status == 400


def respond(request: InferRequest, *results: np.ndarray) -> triton.InferResult:
    """Encode a response and read it back with tritonclient's own parser."""
    encoded = encode_infer_response("m", "3", "r", request, TWO_OUTPUTS, results)
    return triton.InferenceServerClient.parse_response_body(
        encoded.body, header_length=encoded.header_length
    )


def test_binary_outputs_are_read_back_by_tritonclient() -> None:
    scores = np.random.default_rng(1).random((2, 3), dtype=np.float32)
    label = np.array([2, 0], dtype=np.int64)
    request = InferRequest("r", (np.zeros((2, 4), np.float32),), binary_output=True)
    result = respond(request, scores, label)
    np.testing.assert_array_equal(result.as_numpy("scores"), scores)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("m", "3", "r")
    assert "data" not in response["outputs"][0]


def test_requested_outputs_only_those_each_in_its_own_encoding() -> None:
    scores = np.ones((2, 3), dtype=np.float32)
    label = np.array([1, 1], dtype=np.int64)
    request = InferRequest(
        "r", (scores,), outputs=(RequestedOutput("label", binary=False),), binary_output=True
    )
    encoded = encode_infer_response("m", "3", "r", request, TWO_OUTPUTS, (scores, label))
    assert encoded.header_length is None and encoded.content_type == "application/json"
    document = json.loads(encoded.body)
    assert document["outputs"] == [
        {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 1]}
    ]
    both = InferRequest(
        "r", (scores,), outputs=(RequestedOutput("scores", True), RequestedOutput("label"))
    )
    result = respond(both, scores, label)
    np.testing.assert_array_equal(result.as_numpy("scores"), scores)
    assert result.get_response()["outputs"][1]["data"] == [1, 1]


def test_an_unknown_requested_output_is_a_400() -> None:
    request = InferRequest("r", (np.ones(1),), outputs=(RequestedOutput("nope"),))
    with pytest.raises(OipError) as caught:
        encode_infer_response("m", "1", "r", request, OUTPUTS, (np.ones((1, 3)),))
    assert caught.value.status == 400 and "nope" in caught.value.message


def test_a_json_response_flattens_the_output_and_refuses_nan_from_the_model() -> None:
    request = InferRequest("r", (np.ones(1),))
    encoded = encode_infer_response(
        "m", "3", "r", request, OUTPUTS, (np.ones((2, 3), dtype=np.float32),)
    )
    assert json.loads(encoded.body)["outputs"] == [
        {"name": "output-0", "datatype": "FP32", "shape": [2, 3], "data": [1.0] * 6}
    ]
    with pytest.raises(ModelOutputError):
        encode_infer_response("m", "3", "r", request, OUTPUTS, (np.full((1, 3), np.nan),))
    binary = InferRequest("r", (np.ones(1),), binary_output=True)
    assert encode_infer_response("m", "3", "r", binary, OUTPUTS, (np.full((1, 3), np.nan),))


def test_server_and_model_metadata() -> None:
    assert server_metadata("flywheel", "0.1") == {
        "name": "flywheel", "version": "0.1", "extensions": ["binary_tensor_data"],
    }  # fmt: skip
    assert model_metadata("m", ["1", "2"], INPUTS, OUTPUTS) == {
        "name": "m",
        "versions": ["1", "2"],
        "platform": "pytorch",
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output-0", "datatype": "FP32", "shape": [-1, 3]}],
    }


def test_the_header_length_name_is_the_one_tritonclient_reads() -> None:
    assert HEADER_LENGTH.lower() == "Inference-Header-Content-Length".lower()


def test_feedback_needs_an_id_and_a_label() -> None:
    assert parse_feedback(b'{"id": "a", "label": 3}') == ("a", 3)
    for bad in (b'{"label": 3}', b'{"id": "a"}', b'{"id": "a", "label": true}', b"3"):
        with pytest.raises(OipError):
            parse_feedback(bad)
