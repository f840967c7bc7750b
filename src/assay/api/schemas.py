"""Request and response bodies, with the checks that turn a malformed body into a message naming the problem."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from assay.config import DEFAULT_CONSUMER_GROUP, describe_validation_error
from assay.errors import InvalidInput, MalformedBody
from assay.models.adapter import InputKind, Inputs

BodyModel = TypeVar("BodyModel", bound=BaseModel)

TextField = str | list[str] | list[list[str]]


def _kind_name(value: Any) -> str:
    return {str: "a string", list: "a list", dict: "an object", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def check_text(value: Any) -> Any:
    """Accept a string, a non-empty list of strings, or a non-empty list of [a, b] string pairs."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError(f"must be a string, a list of strings or a list of [a, b] pairs, not {_kind_name(value)}")
    if not value:
        raise ValueError("must not be an empty list")
    first_string = next((i for i, v in enumerate(value) if isinstance(v, str)), None)
    first_list = next((i for i, v in enumerate(value) if isinstance(v, list)), None)
    if first_string is not None and first_list is not None:
        raise ValueError(
            f"mixes strings and pairs (text[{first_string}] is a string, text[{first_list}] is a list); "
            "send one kind per request"
        )
    for i, item in enumerate(value):
        if isinstance(item, str):
            continue
        if not isinstance(item, list):
            raise ValueError(f"text[{i}] must be a string or a [a, b] pair, not {_kind_name(item)}")
        if len(item) != 2 or not all(isinstance(part, str) for part in item):
            raise ValueError(f"text[{i}] must be a pair of exactly two strings, got {len(item)} item(s)"
                             if len(item) != 2 else f"text[{i}] must hold two strings")
    return value


class ClassifyRequest(BaseModel):
    """Takeoff's /classify body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "I love this!", "consumer_group": "primary"},
                {"text": [["What colour is the dog?", "The puppy is light blue."]], "consumer_group": "primary"},
            ]
        },
    )

    text: TextField = Field(
        description="One text, a batch of texts, or a batch of [a, b] pairs (query/document, premise/hypothesis, "
        "question/context). Pairs are encoded by the model's tokenizer with its own separator."
    )
    consumer_group: str | None = Field(
        DEFAULT_CONSUMER_GROUP, description="The consumer group to serve the request; empty or absent means primary."
    )

    @field_validator("text", mode="wrap")
    @classmethod
    def _check_text(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Hand-checked rather than union-validated: clearer messages and no per-item validation cost.
        return check_text(value)

    @property
    def group(self) -> str:
        return self.consumer_group or DEFAULT_CONSUMER_GROUP

    def inputs(self) -> Inputs:
        if isinstance(self.text, str):
            return Inputs(kind=InputKind.SINGLE, items=[self.text])
        if isinstance(self.text[0], list):
            return Inputs(kind=InputKind.PAIRS, items=[(a, b) for a, b in self.text])  # type: ignore[misc]
        return Inputs(kind=InputKind.SINGLE, items=list(self.text))

    @property
    def is_batch(self) -> bool:
        return not isinstance(self.text, str)


class ClassifyResponse(BaseModel):
    """Raw logits per input (classification, reranking, NLI) or one answer string per pair (QA)."""

    result: list[float] | list[list[float]] | list[str] = Field(
        description="For a single string: that input's row of logits. For a list: one row (or QA answer) per input."
    )


class ErrorDetail(BaseModel):
    type: str = Field(description="Machine-readable error type, e.g. invalid_input, not_found, overloaded.")
    message: str = Field(description="What went wrong and what to change.")
    request_id: str = Field(description="The id of the request, also in the server log.")


class ErrorResponse(BaseModel):
    """Every error has this shape."""

    error: ErrorDetail


class HealthResponse(BaseModel):
    status: str = Field(description="'ok' when every consumer group has a ready reader.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "The body is not valid JSON.",
        404: "Unknown consumer group (the message names those that exist).",
        413: "Body, batch or a text over its limit.",
        422: "The body's shape does not fit the endpoint or the model.",
        429: "The group's queue is full; honour Retry-After.",
        500: "Internal failure; the message holds a request id that is in the log.",
        503: "The group is still loading, has no live reader, or the server is shutting down.",
    }.items()
}


def parse_body(raw: bytes, model: type[BodyModel]) -> BodyModel:
    """Parse a JSON body whatever its content type (curl users often omit it), then validate it."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedBody("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that parses its own body with ``parse_body``."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
