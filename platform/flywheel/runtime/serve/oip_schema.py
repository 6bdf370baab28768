"""The Open Inference Protocol (v2) REST payloads as pydantic models: the gateway's OpenAPI schemas.

The single source of the JSON Schemas that the ingress's OpenAPI document shows
(``/v2/models/<name>/openapi.json``). They follow KServe's definition of the protocol,
``specification/protocol/open_inference_rest.yaml`` in kserve/open-inference-protocol
(``inference_request``, ``request_input``, ``request_output``, ``tensor_data``, ``parameters``,
``inference_response``, ``response_output``, ``metadata_model_response``, ``metadata_tensor``,
``metadata_server_response`` and the ``{"error": ...}`` error responses), narrowed to what this
server accepts and sends:

* ``parameters`` map names to booleans, numbers or strings (KServe: any object);
* an input's ``datatype`` is one of the types flywheel serves (KServe: any string; ``BYTES``
  is refused with 400) and its ``shape`` holds non-negative integers;
* a JSON response always carries every output's ``data``; an output sent with the binary tensor
  data extension makes the whole response ``application/octet-stream``;
* the feedback endpoint is flywheel's own.

The ingress still parses bodies itself (:mod:`.oip`): a binary request is a JSON header then raw
tensors, which no JSON body parser reads. These models describe; they do not parse. Pure: no
FastAPI, no Serve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from typing_extensions import TypeAliasType

#: Where the OpenAPI document keeps its schemas.
REF_TEMPLATE = "#/components/schemas/{model}"

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64",
]  # fmt: skip
Parameters = Annotated[
    dict[str, bool | int | float | str],
    Field(description="Named values: booleans, numbers or strings."),
]
if TYPE_CHECKING:  # mypy does not resolve a recursive TypeAliasType
    TensorData: TypeAlias = list["TensorData | bool | float | str"]
else:  # pydantic needs one to follow the recursion
    TensorData = TypeAliasType("TensorData", list[Union["TensorData", bool, float, str]])


class _Strict(BaseModel):
    """What the server sends: exactly these members, so a response that drifts fails its check."""

    model_config = ConfigDict(extra="forbid")


class _Lenient(BaseModel):
    """What the server accepts: members it does not know are ignored, as the protocol has them."""


class RequestInput(_Lenient):
    """One input tensor of an inference request (KServe ``request_input``)."""

    name: str = Field(description="The input's name in the model's signature.")
    shape: list[Annotated[int, Field(ge=0)]] = Field(description="The tensor's shape.")
    datatype: Datatype = Field(description="The tensor's element type.")
    parameters: Parameters | None = Field(
        default=None,
        description="With the binary tensor data extension, `binary_data_size`: the tensor's "
        "bytes in the binary part of the body (and no `data`).",
    )
    data: TensorData = Field(
        description="The values, flat or nested, in row-major order; their count is the "
        "product of `shape`."
    )


class RequestOutput(_Lenient):
    """An output the request asks for (KServe ``request_output``)."""

    name: str = Field(description="The output's name in the model's signature.")
    parameters: Parameters | None = Field(
        default=None,
        description="`binary_data`: send this output in the binary part of the response.",
    )


class InferenceRequest(_Lenient):
    """An inference request (KServe ``inference_request``)."""

    id: str | None = Field(default=None, description="Echoed in the response.")
    parameters: Parameters | None = Field(
        default=None,
        description="`binary_data_output`: send every output not named in `outputs` in binary; "
        "`sticky`: choose the version by `id`.",
    )
    inputs: list[RequestInput] = Field(
        min_length=1, description="Every input of the model's signature."
    )
    outputs: list[RequestOutput] | None = Field(
        default=None, description="The outputs to send (default: all of them)."
    )


class ResponseOutput(_Strict):
    """One output tensor of a JSON inference response (KServe ``response_output``)."""

    name: str = Field(description="The output's name in the model's signature.")
    shape: list[int] = Field(description="The tensor's shape.")
    datatype: Datatype = Field(description="The tensor's element type.")
    data: list[bool | float] = Field(description="The values, flat, in row-major order.")


class InferenceResponse(_Strict):
    """An inference response (KServe ``inference_response``)."""

    model_name: str = Field(description="The model that answered.")
    model_version: str = Field(description="The version that answered.")
    id: str = Field(description="The request's id, or one chosen by the server.")
    outputs: list[ResponseOutput] = Field(description="The outputs asked for.")


class TensorMetadata(_Strict):
    """An input or output of the model's signature (KServe ``metadata_tensor``)."""

    name: str = Field(description="The tensor's name.")
    datatype: str = Field(description="The tensor's element type.")
    shape: list[int] = Field(description="The tensor's shape; -1 for a variable dimension.")


class ModelMetadata(_Strict):
    """Model metadata (KServe ``metadata_model_response``)."""

    name: str = Field(description="The model's name.")
    versions: list[str] = Field(description="The versions served.")
    platform: str = Field(description="The framework the model runs on.")
    inputs: list[TensorMetadata] = Field(description="The model's inputs.")
    outputs: list[TensorMetadata] = Field(description="The model's outputs.")


class ModelReady(_Strict):
    """The model is ready: every version it serves is loaded."""

    name: str = Field(description="The model's name.")
    ready: bool = Field(description="Always true: a model that is not ready answers 503.")


class VersionReady(_Strict):
    """The version is ready: it is loaded and served."""

    name: str = Field(description="The model's name.")
    version: str = Field(description="The version.")
    ready: bool = Field(description="Always true: a version not served answers 404.")


class ServerMetadata(_Strict):
    """Server metadata (KServe ``metadata_server_response``)."""

    name: str = Field(description="The server's name.")
    version: str = Field(description="The server's version.")
    extensions: list[str] = Field(description="The protocol extensions it implements.")


class Live(_Strict):
    live: bool = Field(description="The server is up.")


class Ready(_Strict):
    ready: bool = Field(description="The server can answer inference requests.")


class FeedbackRequest(_Lenient):
    """The true label of an answered request (flywheel's own endpoint)."""

    id: str = Field(min_length=1, description="The id of an answered request.")
    label: int | float | str = Field(description="The true label.")


class FeedbackResponse(_Strict):
    """The label is stored against the version that answered."""

    id: str = Field(description="The request's id.")
    model_version: str = Field(description="The version that answered the request.")
    correct: bool | None = Field(
        description="Whether the answer's predicted class is the label; null when the answer "
        "was no one-row classification."
    )


class ErrorBody(_Strict):
    """The protocol's error response (KServe ``inference_error_response``)."""

    error: str = Field(description="What went wrong.")


#: Request bodies: the ingress reads them itself, so FastAPI does not list them in the document.
REQUEST_MODELS: tuple[type[BaseModel], ...] = (InferenceRequest, FeedbackRequest)


def request_schemas() -> dict[str, dict[str, Any]]:
    """The request bodies' JSON Schemas and the schemas they refer to, by name, with references
    into the OpenAPI document's components."""
    _, document = models_json_schema(
        [(model, "validation") for model in REQUEST_MODELS], ref_template=REF_TEMPLATE
    )
    schemas: dict[str, dict[str, Any]] = document["$defs"]
    return schemas


def json_body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """An OpenAPI request body of ``model``'s schema (in the components)."""
    ref = {"$ref": REF_TEMPLATE.format(model=model.__name__)}
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": ref}},
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses`` for these error statuses, each with the error body."""
    return {status: {"model": ErrorBody, "description": _REASONS[status]} for status in statuses}


_REASONS = {
    400: "The request breaks the protocol or does not fit the model's signature.",
    404: "No such version is served, or no such request was answered.",
    413: "The body exceeds the size limit.",
    500: "The model's answer cannot be sent as JSON (NaN or infinity), or the model failed.",
    503: "The model is still loading.",
}
