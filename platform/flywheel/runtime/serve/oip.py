"""The Open Inference Protocol (v2) over REST: parse and check requests, encode responses.

Covers what KServe's and Triton's definitions of the protocol ask of a server that serves
tensors: several named inputs, the ``id`` echo, request ``parameters``, requested outputs, and
the binary tensor data extension in both directions (a JSON header of
``Inference-Header-Content-Length`` bytes, then the raw little-endian tensors in order; what
tritonclient sends and asks for by default). No Serve and no HTTP here, only bytes in and out,
so that every bad request is unit tested. A bad request raises :class:`OipError` with the 4xx
status to answer with, in the protocol's error format ``{"error": "..."}``.

NaN and infinity are refused in every input (JSON has no such numbers, and a model fed them
answers with values JSON cannot carry either).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # tracking imports mlflow and torch
    from flywheel.tracking import TensorInfo

#: OIP datatype -> numpy dtype (little-endian: the binary extension's byte order).
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
#: numpy dtype name -> OIP datatype.
DATATYPES = {dtype.name: name for name, dtype in NUMPY_DTYPES.items()}
#: The request and response header that gives the JSON part's length in a binary body.
HEADER_LENGTH = "inference-header-content-length"
#: Protocol extensions this server implements (``GET /v2``).
EXTENSIONS = ("binary_tensor_data",)

_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}  # target kind -> JSON kinds allowed
_SCALARS = (bool, int, float, str)


class OipError(Exception):
    """A request the protocol rejects: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.message}


class ModelOutputError(Exception):
    """The model's answer cannot be encoded as JSON (a server-side fault: HTTP 500)."""


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` None: as the request's default says."""

    name: str
    binary: bool | None = None


@dataclass(frozen=True)
class InferRequest:
    """A checked inference request.

    ``inputs`` are in the order of the model's signature; ``outputs`` empty means every output
    of the model; ``binary_output`` is the request's default for outputs it does not name.
    """

    request_id: str | None
    inputs: tuple[np.ndarray, ...]
    outputs: tuple[RequestedOutput, ...] = ()
    binary_output: bool = False
    parameters: Mapping[str, bool | int | float | str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows of the first input (the batch dimension)."""
        return int(self.inputs[0].shape[0]) if self.inputs[0].ndim else 1


@dataclass(frozen=True)
class EncodedResponse:
    """An encoded inference response: the body, and the header length when it is binary."""

    body: bytes
    header_length: int | None

    @property
    def content_type(self) -> str:
        return "application/json" if self.header_length is None else "application/octet-stream"


def parse_infer_request(
    body: bytes, header_length: str | None, inputs: Sequence[TensorInfo]
) -> InferRequest:
    """Parse an OIP inference request for a model whose signature has ``inputs``.

    ``header_length`` is the request's ``Inference-Header-Content-Length`` header, if any.
    """
    header, binary = _split_body(body, header_length)
    document = _json_object(header)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise OipError(400, "'id' must be a string")
    parameters = _parameters(document.get("parameters"), "the request")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise OipError(400, "parameter 'binary_data_output' must be true or false")
    tensors = _input_tensors(document.get("inputs"), inputs, binary)
    return InferRequest(
        request_id, tensors, _requested_outputs(document.get("outputs")), binary_output, parameters
    )


def encode_infer_response(
    model: str, version: str, request_id: str, request: InferRequest,
    outputs: Sequence[TensorInfo], results: Sequence[np.ndarray],
) -> EncodedResponse:  # fmt: skip
    """The OIP response: the version that answered, the request id, the outputs asked for.

    ``results`` are the model's outputs in the order of ``outputs`` (its signature).
    """
    named = {info.name: result for info, result in zip(outputs, results, strict=True)}
    wanted = request.outputs or tuple(RequestedOutput(info.name) for info in outputs)
    header: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for requested in wanted:
        if requested.name not in named:
            known = ", ".join(repr(o.name) for o in outputs)
            raise OipError(400, f"unknown output {requested.name!r}; the model's are {known}")
        binary = request.binary_output if requested.binary is None else requested.binary
        tensor, raw = _output_tensor(requested.name, named[requested.name], binary)
        header.append(tensor)
        if raw is not None:
            chunks.append(raw)
    document = {"model_name": model, "model_version": version, "id": request_id, "outputs": header}
    encoded = _json_bytes(document)
    if not chunks:
        return EncodedResponse(encoded, None)
    return EncodedResponse(encoded + b"".join(chunks), len(encoded))


def server_metadata(name: str, version: str) -> dict[str, Any]:
    """OIP server metadata (``GET /v2``): name, version, extensions."""
    return {"name": name, "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(
    model: str, versions: Sequence[str], inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
) -> dict[str, Any]:  # fmt: skip
    """OIP model metadata: name, versions, platform, input and output tensors."""
    return {
        "name": model,
        "versions": list(versions),
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


@functools.cache  # every request asks it of the same few signature dtypes
def datatype_of(dtype: str) -> str:
    """The OIP datatype of a numpy dtype name (``float32`` -> ``FP32``)."""
    try:
        return DATATYPES.get(np.dtype(dtype).name, dtype.upper())
    except TypeError:  # not a numpy dtype name
        return dtype.upper()


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data that follows it."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise OipError(
            400,
            f"header Inference-Header-Content-Length {header_length!r} must be a byte count "
            f"within the body's {len(body)} bytes",
        )
    size = int(header_length)
    return body[:size], body[size:]


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OipError(400, f"the body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise OipError(400, "the body nests too deeply") from e
    if not isinstance(document, dict):
        raise OipError(400, "the body must be a JSON object")
    return document


def _refuse_constant(name: str) -> float:
    raise OipError(400, f"the body holds {name}, which is not a JSON number; send finite values")


def _parameters(value: Any, owner: str) -> dict[str, bool | int | float | str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, _SCALARS) for v in value.values()):
        raise OipError(400, f"'parameters' of {owner} must map names to booleans, numbers or text")
    return value


def _input_tensors(
    tensors: Any, expected: Sequence[TensorInfo], binary: bytes
) -> tuple[np.ndarray, ...]:
    """Every input the model takes, in its order, each checked against the signature."""
    if not isinstance(tensors, list) or not tensors:
        raise OipError(400, "'inputs' must be a non-empty list of tensors")
    if not all(isinstance(t, dict) for t in tensors):
        raise OipError(400, "each input must be an object with name, shape, datatype and data")
    names = [t.get("name") for t in tensors]
    if not all(isinstance(n, str) for n in names):
        raise OipError(400, "each input needs a 'name' (a string)")
    by_name = {info.name: info for info in expected}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = ", ".join(repr(n) for n in by_name)
        raise OipError(400, f"unknown input {unknown[0]!r}; the model's inputs are {known}")
    if len(set(names)) != len(names):
        raise OipError(400, "an input is given twice")
    missing = [n for n in by_name if n not in names]
    if missing:
        raise OipError(400, f"missing input {missing[0]!r}; the model takes {len(by_name)}")
    decoded, offset = {}, 0
    for tensor in tensors:
        decoded[tensor["name"]], offset = _tensor(tensor, by_name[tensor["name"]], binary, offset)
    if offset != len(binary):
        raise OipError(400, f"{len(binary) - offset} bytes of binary data belong to no input")
    return tuple(decoded[info.name] for info in expected)


def _tensor(
    tensor: dict[str, Any], expected: TensorInfo, binary: bytes, offset: int
) -> tuple[np.ndarray, int]:
    """One input as an array of its shape, and the offset of the next binary tensor."""
    name, shape, datatype = expected.name, tensor.get("shape"), tensor.get("datatype")
    want = datatype_of(expected.dtype)
    if datatype != want:
        raise OipError(400, f"input {name!r} has datatype {datatype!r}; the model takes {want}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise OipError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
    _check_shape(name, shape, expected.shape)
    parameters = _parameters(tensor.get("parameters"), f"input {name!r}")
    size = parameters.get("binary_data_size")
    dtype = NUMPY_DTYPES.get(want)
    if dtype is None:
        raise OipError(400, f"input {name!r} is of datatype {want}, which flywheel does not serve")
    if size is not None:
        array, offset = _binary_tensor(name, size, "data" in tensor, dtype, binary, offset)
    else:
        array = _json_tensor(name, tensor.get("data"), dtype)
    if array.size != math.prod(shape):
        raise OipError(
            400, f"input {name!r}: shape {shape} needs {math.prod(shape)} values, got {array.size}"
        )
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise OipError(400, f"input {name!r} holds NaN or infinity; send finite values")
    return array.reshape(shape), offset


def _binary_tensor(
    name: str, size: object, has_data: bool, dtype: np.dtype[Any], binary: bytes, offset: int
) -> tuple[np.ndarray, int]:
    if has_data:
        raise OipError(400, f"input {name!r} has both 'data' and binary_data_size")
    if type(size) is not int or size < 0:
        raise OipError(400, f"input {name!r}: binary_data_size must be a non-negative integer")
    if offset + size > len(binary):
        raise OipError(400, f"input {name!r}: {size} bytes declared, {len(binary) - offset} left")
    if size % dtype.itemsize:
        raise OipError(400, f"input {name!r}: {size} bytes is no whole number of values")
    return np.frombuffer(binary, dtype=dtype, count=size // dtype.itemsize, offset=offset), (
        offset + size
    )


def _json_tensor(name: str, data: Any, dtype: np.dtype[Any]) -> np.ndarray:
    """JSON ``data`` (flat or nested row-major) as a flat array of ``dtype``, values checked."""
    if not isinstance(data, list):
        raise OipError(400, f"input {name!r}: 'data' must be a list")
    try:
        parsed = np.asarray(data)
    except (ValueError, TypeError) as e:  # ragged nesting
        raise OipError(400, f"input {name!r}: 'data' is not a regular array: {e}") from e
    if parsed.size == 0:
        return np.zeros(0, dtype=dtype)
    if parsed.dtype.kind not in _JSON_KINDS[dtype.kind]:
        want = DATATYPES[dtype.name]
        raise OipError(400, f"input {name!r}: 'data' does not hold {want} values")
    if dtype.kind in "iu":
        limits = np.iinfo(dtype)
        if parsed.min() < limits.min or parsed.max() > limits.max:
            raise OipError(400, f"input {name!r}: a value is out of range for {dtype.name}")
    with np.errstate(over="ignore"):  # FP16/FP32 overflow becomes inf, refused by the caller
        return parsed.astype(dtype).reshape(-1)


def _check_shape(name: str, shape: list[int], expected: tuple[int, ...]) -> None:
    fits = len(shape) == len(expected) and all(
        e in (-1, s) for s, e in zip(shape, expected, strict=True)
    )
    if not fits:
        raise OipError(400, f"input {name!r} has shape {shape}; the model takes {list(expected)}")
    if expected and shape[0] == 0:
        raise OipError(400, f"input {name!r} holds no rows")


def _requested_outputs(outputs: Any) -> tuple[RequestedOutput, ...]:
    if outputs is None:
        return ()
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise OipError(400, "'outputs' must be a list of objects, each with a 'name'")
    requested = []
    for output in outputs:
        name = output.get("name")
        if not isinstance(name, str):
            raise OipError(400, "each requested output needs a 'name' (a string)")
        parameters = _parameters(output.get("parameters"), f"output {name!r}")
        if "classification" in parameters:
            raise OipError(400, f"output {name!r}: the classification extension is not supported")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise OipError(400, f"output {name!r}: parameter 'binary_data' must be true or false")
        requested.append(RequestedOutput(name, binary))
    if len({r.name for r in requested}) != len(requested):
        raise OipError(400, "an output is requested twice")
    return tuple(requested)


def _output_tensor(
    name: str, result: np.ndarray, binary: bool
) -> tuple[dict[str, Any], bytes | None]:
    datatype = DATATYPES.get(result.dtype.name)
    if datatype is None:  # a model output of another type: sent as FP32
        result, datatype = result.astype(np.float32), "FP32"
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(result.shape)}
    if not binary:
        tensor["data"] = result.reshape(-1).tolist()
        return tensor, None
    raw = np.ascontiguousarray(result, dtype=NUMPY_DTYPES[datatype]).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return tensor, raw


def _json_bytes(document: dict[str, Any]) -> bytes:
    try:
        return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()
    except ValueError as e:  # the model answered NaN or infinity: no JSON can carry that
        raise ModelOutputError(
            "the model answered NaN or infinity; ask for binary outputs to receive them"
        ) from e


def _tensor_metadata(tensor: TensorInfo) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": datatype_of(tensor.dtype), "shape": list(tensor.shape)}
