"""POST /embed: Takeoff's embedding endpoint, one vector per text from a consumer group serving an embedding model.

The texts go through the group's queue like /classify (api/scoring.py). The OpenAI-shaped /v1/embeddings on the
OpenAI port (api/openai.py) builds the same inputs from its own body.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, field_validator

from assay.api.responses import JSONResponse
from assay.api.schemas import ERROR_RESPONSES, check_texts, json_body, parse_body
from assay.api.scoring import request_timeout, score
from assay.api.state import ServerState
from assay.config import DEFAULT_CONSUMER_GROUP
from assay.models.adapter import InputKind, Inputs
from assay.models.embedding import EmbedOptions


class EmbedRequest(BaseModel):
    """Takeoff's /embed body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "The puppy is light blue.", "consumer_group": "embed"},
                {"text": ["What colour is the dog?", "The puppy is light blue."], "consumer_group": "embed"},
            ]
        },
    )

    text: str | list[str] = Field(
        description="One text (the result is one vector) or a non-empty list of texts (one vector per text, in "
        "order). Texts longer than the model's maximum length are truncated and named in X-Assay-Truncated."
    )
    consumer_group: str | None = Field(
        DEFAULT_CONSUMER_GROUP,
        description="The consumer group to serve the request (its model must be an embedding model); empty or "
        "absent means primary.",
    )

    @field_validator("text", mode="wrap")
    @classmethod
    def _check_text(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Hand-checked rather than union-validated: one clear message instead of one per union member.
        return check_texts(value, "text")

    @property
    def group(self) -> str:
        return self.consumer_group or DEFAULT_CONSUMER_GROUP


class EmbedResponse(BaseModel):
    """The vectors, pooled and normalized as the model's sentence-transformers config says."""

    result: list[float] | list[list[float]] = Field(
        description="For a single string: its vector. For a list: one vector per text, in input order."
    )


def texts_to_embed(text: str | list[str], dimensions: int | None = None) -> Inputs:
    """The inputs of an embedding request: every text on its own, answered with its vector."""
    items = [text] if isinstance(text, str) else list(text)
    return Inputs(kind=InputKind.SINGLE, items=items, options=EmbedOptions(dimensions=dimensions))


def embed_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/embed",
        response_model=EmbedResponse,
        responses={**ERROR_RESPONSES},
        summary="Embed texts",
        openapi_extra=json_body(EmbedRequest),
    )
    async def embed(request: Request, timeout: float | None = Depends(request_timeout)) -> JSONResponse:
        """One vector per text from an embedding group (a sentence-transformers model or a bare encoder). A
        group serving any other model gets 422."""
        body = parse_body(await request.body(), EmbedRequest)
        scored, headers = await score(request, state, body.group, texts_to_embed(body.text), timeout)
        result = scored.results if isinstance(body.text, list) else scored.results[0]
        return JSONResponse({"result": result}, headers=headers)

    return router
