"""Request and response bodies, with the checks that turn a malformed body into a message naming the problem."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

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
from assay.models.labels import LabelOptions
from assay.models.question_answering import QAOptions

BodyModel = TypeVar("BodyModel", bound=BaseModel)

TextField = str | list[str] | list[list[str]]


def kind_name(value: Any) -> str:
    """A JSON value's kind in words, for messages that say what was sent instead."""
    return {str: "a string", list: "a list", dict: "an object", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def check_text(value: Any) -> Any:
    """Accept a string, a non-empty list of strings, or a non-empty list of [a, b] string pairs."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError(f"must be a string, a list of strings or a list of [a, b] pairs, not {kind_name(value)}")
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
            raise ValueError(f"text[{i}] must be a string or a [a, b] pair, not {kind_name(item)}")
        if len(item) != 2 or not all(isinstance(part, str) for part in item):
            raise ValueError(f"text[{i}] must be a pair of exactly two strings, got {len(item)} item(s)"
                             if len(item) != 2 else f"text[{i}] must hold two strings")
    return value


def check_texts(value: Any, name: str) -> Any:
    """Accept a string or a non-empty list of strings (the embedding endpoints: pairs belong to /classify)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError(f"must be a string or a list of strings, not {kind_name(value)}")
    if not value:
        raise ValueError("must not be an empty list")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            hint = " (to score [a, b] pairs use /classify)" if isinstance(item, list) else ""
            raise ValueError(f"{name}[{i}] must be a string, not {kind_name(item)}{hint}")
    return value


class QAOptionsBody(BaseModel):
    """Options of the transformers question-answering pipeline, with its defaults."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(1, ge=1, description="Answers per pair, best first (fewer when the context has fewer).")
    max_answer_len: int = Field(15, ge=1, description="Longest answer, in tokens.")
    handle_impossible_answer: bool = Field(
        False, description="Allow the empty answer (start = end = 0) when the model's null score beats every span."
    )
    align_to_words: bool = Field(True, description="Widen token spans to whole words.")


class ClassifyRequest(BaseModel):
    """Takeoff's /classify body, plus two opt-in fields: ``return`` (labels) and ``qa`` (answer options)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "I love this!", "consumer_group": "primary"},
                {"text": [["What colour is the dog?", "The puppy is light blue."]], "consumer_group": "primary"},
                {"text": ["I love this!", "meh"], "consumer_group": "primary", "return": "labels", "top_k": 2},
                {"text": [["where is TitanML based?", "TitanML is a london-based AI startup"]],
                 "consumer_group": "qa", "qa": {"top_k": 3}},
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
    return_: Literal["raw", "labels"] = Field(
        "raw",
        alias="return",
        description="'raw' (Takeoff's answer): a row of raw logits per input, or one answer string per QA pair. "
        "'labels': per input a list of {label, score}, label names from the model's id2label, best first; scores "
        "are a softmax across labels, or a sigmoid per label for multi-label models "
        "(problem_type multi_label_classification) and one-logit models. Classification models only.",
    )
    top_k: int | None = Field(
        None, ge=1, description="With return 'labels': keep the k best labels per input (absent: all labels)."
    )
    qa: QAOptionsBody | None = Field(
        None,
        description="Question answering models only: with this object, each pair gets a list of "
        "{answer, score, start, end} (character offsets in the context) instead of one answer string.",
    )

    @field_validator("text", mode="wrap")
    @classmethod
    def _check_text(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Hand-checked rather than union-validated: clearer messages and no per-item validation cost.
        return check_text(value)

    @property
    def group(self) -> str:
        return self.consumer_group or DEFAULT_CONSUMER_GROUP

    def options(self) -> LabelOptions | QAOptions | None:
        """The task options the body asks for; None keeps Takeoff's raw results."""
        if self.qa is not None and self.return_ == "labels":
            raise InvalidInput("'qa' options are for question answering models and 'return: labels' for "
                               "classification models; send one of them")
        if self.top_k is not None and self.return_ != "labels":
            raise InvalidInput("top_k applies with \"return\": \"labels\" (for answers per QA pair use qa.top_k)")
        if self.qa is not None:
            return QAOptions(**self.qa.model_dump())
        if self.return_ == "labels":
            return LabelOptions(top_k=self.top_k)
        return None

    def inputs(self) -> Inputs:
        options = self.options()
        if isinstance(self.text, str):
            return Inputs(kind=InputKind.SINGLE, items=[self.text], options=options)
        if isinstance(self.text[0], list):
            return Inputs(kind=InputKind.PAIRS, items=[(a, b) for a, b in self.text], options=options)  # type: ignore[misc]
        return Inputs(kind=InputKind.SINGLE, items=list(self.text), options=options)

    @property
    def is_batch(self) -> bool:
        return not isinstance(self.text, str)


class LabelScore(BaseModel):
    label: str = Field(description="The label's name from the model's id2label.")
    score: float = Field(description="Its probability: softmax across labels, or sigmoid for multi-label models.")


class QAAnswer(BaseModel):
    answer: str = Field(description="The answer, a span of the context; empty for the impossible answer.")
    score: float = Field(description="Probability of the span, as the transformers pipeline computes it.")
    start: int = Field(description="Character offset of the answer's start in the context.")
    end: int = Field(description="Character offset just past the answer's end.")


class ClassifyResponse(BaseModel):
    """Raw logits per input (classification, reranking, NLI), one answer string per pair (QA) or each pair's
    cosine as a one-value row (embedding) by default; labels with probabilities with ``return: labels``; answer
    lists with ``qa``."""

    result: (
        list[float] | list[list[float]] | list[str] | list[LabelScore] | list[list[LabelScore]] | list[list[QAAnswer]]
    ) = Field(
        description="For a single string: that input's row of logits (or its labels). For a list: one row, "
        "label list, answer string or answer list per input, in input order."
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
    """OpenAPI ``requestBody`` for a route that parses its own body with ``parse_body``.

    Nested models are inlined: openapi_extra cannot add to ``components``, so a ``$ref`` there would dangle.
    """
    schema = model.model_json_schema()
    schema = _inline(schema, schema.pop("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """Replace every ``{"$ref": "#/$defs/Name"}`` by the definition itself (request models are not recursive)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node
