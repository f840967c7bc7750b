"""The inference app (port 3000): /classify, /healthz and /status, as Takeoff serves them."""

from __future__ import annotations

import math

from fastapi import FastAPI, Header, Request

from assay import __version__
from assay.api.disconnect import until_disconnected
from assay.api.errors import install_error_handlers
from assay.api.middleware import ServerMiddleware
from assay.api.responses import JSONResponse
from assay.api.schemas import (
    ERROR_RESPONSES,
    ClassifyRequest,
    ClassifyResponse,
    HealthResponse,
    json_body,
    parse_body,
)
from assay.api.state import ServerState
from assay.errors import InvalidInput, TooLarge
from assay.models.adapter import InputKind, Inputs

TRUNCATED_HEADER = "X-Assay-Truncated"


def enforce_limits(inputs: Inputs, state: ServerState) -> None:
    """Texts per request and bytes per text, each a 413 naming its limit."""
    config = state.config
    if len(inputs.items) > config.max_user_batch_size:
        raise TooLarge(
            f"the request holds {len(inputs.items)} inputs; the limit is {config.max_user_batch_size} "
            "(TAKEOFF_MAX_USER_BATCH_SIZE)"
        )
    limit = config.max_prompt_string_bytes
    for i, item in enumerate(inputs.items):
        for part in item if inputs.kind is InputKind.PAIRS else (item,):
            # Cheap bound first: a str of n characters has at most 4n UTF-8 bytes.
            if len(part) * 4 > limit and len(part.encode("utf-8", "surrogatepass")) > limit:
                raise TooLarge(
                    f"text[{i}] is over {limit} bytes (TAKEOFF_MAX_PROMPT_STRING_BYTES)"
                )


def parse_timeout(value: str | None) -> float | None:
    """X-Request-Timeout in seconds: a positive, finite number (nan or inf would never fire)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidInput(f"X-Request-Timeout must be a number of seconds, got '{value}'") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise InvalidInput("X-Request-Timeout must be a positive, finite number of seconds")
    return seconds


def create_inference_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="Assay inference API",
        version=__version__,
        description="Takeoff-compatible scoring: classification, reranking, NLI and extractive QA.",
        default_response_class=JSONResponse,
    )
    install_error_handlers(app)
    registry = state.registry

    @app.post(
        "/classify",
        response_model=ClassifyResponse,
        responses={**ERROR_RESPONSES},
        summary="Score texts or pairs, or answer questions",
        openapi_extra=json_body(ClassifyRequest),
    )
    async def classify(
        request: Request,
        x_request_timeout: str | None = Header(
            None, description="Seconds after which queued work is dropped and the request fails with 504."
        ),
    ) -> JSONResponse:
        """Raw logits per input for classification and reranking models; one answer span per
        [question, context] pair for question answering models."""
        body = parse_body(await request.body(), ClassifyRequest)
        inputs = body.inputs()
        enforce_limits(inputs, state)
        group = registry.group(body.group)
        scored = await until_disconnected(request, group.score(inputs, timeout=parse_timeout(x_request_timeout)))
        headers = {}
        if scored.truncated:
            headers[TRUNCATED_HEADER] = ",".join(str(i) for i in scored.truncated)
        result = scored.results if body.is_batch else scored.results[0]
        return JSONResponse({"result": result}, headers=headers)

    @app.get("/healthz", response_model=HealthResponse, responses={503: ERROR_RESPONSES[503]})
    async def healthz() -> JSONResponse:
        """200 once every consumer group has a ready reader; 503 while loading or shutting down."""
        groups = registry.groups
        if not state.accepting:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        ready = bool(groups) and all(
            any(r.status.value == "ready" for r in g.readers.values()) for g in groups.values()
        )
        return JSONResponse({"status": "ok" if ready else "loading"}, status_code=200 if ready else 503)

    @app.get("/status")
    async def status() -> JSONResponse:
        """Takeoff's status: ``live_readers`` keyed by reader id (what deployment probes read)."""
        return JSONResponse(registry.status())

    app.add_middleware(ServerMiddleware, state=state, app_name="inference", limit_body=True)
    return app
