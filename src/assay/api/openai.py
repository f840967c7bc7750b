"""The OpenAI-compatible app (port 3003): POST /v1/embeddings, where the OpenAI SDK and takeoff-client's embed()
send embedding requests.

``model`` names the consumer group. The texts go through the group's queue like /embed, with the same limits,
disconnect handling and errors; only the body and the answer have OpenAI's shape.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, field_validator

from assay import __version__
from assay.api.embed import texts_to_embed
from assay.api.errors import install_error_handlers
from assay.api.middleware import ServerMiddleware
from assay.api.responses import JSONResponse
from assay.api.schemas import ERROR_RESPONSES, check_texts, json_body, parse_body
from assay.api.scoring import request_timeout, score
from assay.api.state import ServerState
from assay.config import DEFAULT_CONSUMER_GROUP


def _is_token_ids(value: Any) -> bool:
    """OpenAI also takes token ids (a list of ints, or a list of such lists): meaningless to another tokenizer."""
    def ints(item: Any) -> bool:
        return isinstance(item, list) and bool(item) and all(isinstance(x, int) for x in item)

    return ints(value) or (isinstance(value, list) and bool(value) and all(ints(item) for item in value))


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings body."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "embed", "input": ["What colour is the dog?", "The puppy is light blue."]},
                {"model": "embed", "input": "The puppy is light blue.", "encoding_format": "base64"},
            ]
        },
    )

    input: str | list[str] = Field(
        description="One text or a non-empty list of texts; token-id arrays are not supported. Texts longer than "
        "the model's maximum length are truncated and named in X-Assay-Truncated."
    )
    model: str | None = Field(
        None, description="The consumer group to serve the request (an embedding model's); empty or absent: primary."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float",
        description="'float': each embedding as a list of numbers. 'base64': each embedding's little-endian float32 "
        "bytes, base64-encoded, as OpenAI sends them (the OpenAI SDK asks for this by default).",
    )
    dimensions: int | None = Field(
        None, ge=1, description="The vector size expected: must equal the model's (vectors are never shortened)."
    )
    user: str | None = Field(None, description="Accepted for OpenAI compatibility and ignored.")

    @field_validator("input", mode="wrap")
    @classmethod
    def _check_input(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if _is_token_ids(value):
            raise ValueError("token-id arrays are not supported; send the text as a string or a list of strings")
        return check_texts(value, "input")

    @property
    def group(self) -> str:
        return self.model or DEFAULT_CONSUMER_GROUP


class Embedding(BaseModel):
    object: Literal["embedding"] = Field(description="Always 'embedding'.")
    index: int = Field(description="The text's position in the request.")
    embedding: list[float] | str = Field(description="The vector: numbers, or base64 float32 bytes.")


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model ran (after truncation, special tokens included).")
    total_tokens: int = Field(description="Same as prompt_tokens.")


class EmbeddingsResponse(BaseModel):
    """OpenAI's embeddings answer."""

    object: Literal["list"] = Field(description="Always 'list'.")
    data: list[Embedding] = Field(description="One embedding per text, in input order.")
    model: str = Field(description="The consumer group that embedded the texts.")
    usage: EmbeddingsUsage


def encode_vector(vector: np.ndarray, encoding_format: str) -> Any:
    """The vector as OpenAI sends it: the array itself (numbers) or its little-endian float32 bytes in base64."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def create_openai_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="Assay OpenAI-compatible API",
        version=__version__,
        description="OpenAI's /v1/embeddings over Assay's embedding groups (model = consumer group).",
        default_response_class=JSONResponse,
    )
    install_error_handlers(app)

    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingsResponse,
        responses={**ERROR_RESPONSES},
        summary="Create embeddings",
        openapi_extra=json_body(EmbeddingsRequest),
    )
    async def embeddings(request: Request, timeout: float | None = Depends(request_timeout)) -> JSONResponse:
        """One embedding per input text from the embedding group named by ``model``; a group serving any other
        model gets 422."""
        body = parse_body(await request.body(), EmbeddingsRequest)
        inputs = texts_to_embed(body.input, body.dimensions)
        scored, headers = await score(request, state, body.group, inputs, timeout)
        data = [
            {"object": "embedding", "index": i, "embedding": encode_vector(vector, body.encoding_format)}
            for i, vector in enumerate(scored.results)
        ]
        usage = {"prompt_tokens": scored.tokens, "total_tokens": scored.tokens}
        return JSONResponse(
            {"object": "list", "data": data, "model": body.group, "usage": usage}, headers=headers
        )

    app.add_middleware(ServerMiddleware, state=state, app_name="openai", limit_body=True, drains=True)
    return app
