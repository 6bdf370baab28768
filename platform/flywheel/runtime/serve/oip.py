"""The Open Inference Protocol (v2) REST payloads: parse and check requests, build responses.

No Serve and no HTTP here, only JSON in and out, so every bad request is unit tested. A bad
request raises :class:`OipError` with the HTTP status (4xx) the gateway answers with, in the
protocol's error format ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from flywheel.tracking import TensorInfo

#: numpy dtype name -> OIP datatype.
DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


class OipError(Exception):
    """A request the protocol rejects: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message}


@dataclass(frozen=True)
class InferRequest:
    """A checked inference request: its id (if the client gave one) and its one input."""

    request_id: str | None
    features: np.ndarray


def parse_infer_request(body: bytes, inputs: tuple[TensorInfo, ...]) -> InferRequest:
    """Parse an OIP inference request for a model whose signature has ``inputs``."""
    document = _json_object(body)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise OipError(400, "'id' must be a string")
    tensors = document.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise OipError(400, "'inputs' must be a non-empty list of tensors")
    if len(inputs) != 1:
        raise OipError(
            400, f"this model takes {len(inputs)} inputs; flywheel serves one-input models"
        )
    if len(tensors) != 1:
        raise OipError(400, f"expected 1 input tensor, got {len(tensors)}")
    return InferRequest(request_id, _tensor(tensors[0], inputs[0]))


def infer_response(
    model: str, version: str, request_id: str, outputs: tuple[TensorInfo, ...], result: np.ndarray
) -> dict[str, Any]:
    """The OIP response: the version that answered, the request id, the output tensor."""
    name = outputs[0].name if outputs else "output-0"
    datatype = DATATYPES.get(str(result.dtype), "FP32")
    return {
        "model_name": model,
        "model_version": version,
        "id": request_id,
        "outputs": [
            {
                "name": name,
                "datatype": datatype,
                "shape": list(result.shape),
                "data": result.reshape(-1).tolist(),
            }
        ],
    }


def model_metadata(
    model: str, versions: list[str], inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...]
) -> dict[str, Any]:
    """OIP model metadata: name, versions, platform, input and output tensors."""
    return {
        "name": model,
        "versions": versions,
        "platform": "pytorch",
        "inputs": [_tensor_metadata(t) for t in inputs],
        "outputs": [_tensor_metadata(t) for t in outputs],
    }


def parse_feedback(body: bytes) -> tuple[str, int | float | str]:
    """A feedback request: ``{"id": <request id>, "label": <true label>}``."""
    document = _json_object(body)
    request_id, label = document.get("id"), document.get("label")
    if not isinstance(request_id, str) or not request_id:
        raise OipError(400, "'id' must be the id of an answered request (a string)")
    if isinstance(label, bool) or not isinstance(label, int | float | str):
        raise OipError(400, "'label' must be the true label: a number or a string")
    return request_id, label


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OipError(400, f"the body is not valid JSON: {e}") from e
    if not isinstance(document, dict):
        raise OipError(400, "the body must be a JSON object")
    return document


def _tensor(tensor: Any, expected: TensorInfo) -> np.ndarray:
    if not isinstance(tensor, dict):
        raise OipError(400, "each input must be an object with name, shape, datatype and data")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if name != expected.name:
        raise OipError(400, f"unknown input {name!r}; the model's input is {expected.name!r}")
    want = DATATYPES.get(expected.dtype, expected.dtype.upper())
    if datatype != want:
        raise OipError(400, f"input {name!r} has datatype {datatype!r}; the model takes {want}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise OipError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
    _check_shape(name, shape, expected.shape)
    data = tensor.get("data")
    if not isinstance(data, list):
        raise OipError(400, f"input {name!r}: 'data' must be a list")
    try:
        array = np.asarray(data, dtype=expected.dtype)
    except (ValueError, TypeError) as e:
        raise OipError(400, f"input {name!r}: 'data' does not hold {want} values: {e}") from e
    if array.size != math.prod(shape):
        raise OipError(
            400, f"input {name!r}: shape {shape} needs {math.prod(shape)} values, got {array.size}"
        )
    return array.reshape(shape)


def _check_shape(name: str, shape: list[int], expected: tuple[int, ...]) -> None:
    fits = len(shape) == len(expected) and all(
        e in (-1, s) for s, e in zip(shape, expected, strict=True)
    )
    if not fits:
        raise OipError(400, f"input {name!r} has shape {shape}; the model takes {list(expected)}")
    if expected and shape[0] == 0:
        raise OipError(400, f"input {name!r} holds no rows")


def _tensor_metadata(tensor: TensorInfo) -> dict[str, Any]:
    return {
        "name": tensor.name,
        "datatype": DATATYPES.get(tensor.dtype, tensor.dtype.upper()),
        "shape": list(tensor.shape),
    }
