"""The inference app (port 3000): /classify, /embed, /healthz and /status as Takeoff serves them; /rerank,
/zero_shot; /groups and the browser playground at /."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request

from assay import __version__
from assay.api.embed import embed_router
from assay.api.errors import install_error_handlers
from assay.api.groups import groups_router
from assay.api.middleware import ServerMiddleware
from assay.api.playground import playground_router
from assay.api.rerank import rerank_router
from assay.api.responses import JSONResponse
from assay.api.schemas import (
    ERROR_RESPONSES,
    ClassifyRequest,
    ClassifyResponse,
    HealthResponse,
    json_body,
    parse_body,
)
from assay.api.scoring import request_timeout, score
from assay.api.state import ServerState
from assay.api.zero_shot import zero_shot_router


def create_inference_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="Assay inference API",
        version=__version__,
        description="Takeoff-compatible scoring: classification, reranking, NLI, extractive QA and embeddings.",
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
    async def classify(request: Request, timeout: float | None = Depends(request_timeout)) -> JSONResponse:
        """Raw logits per input for classification and reranking models; one answer span per
        [question, context] pair for question answering models; each pair's cosine similarity, as a one-value
        row, for embedding models (single texts to an embedding model are a 422: use /embed). Opt in to label
        names with probabilities (``return: labels``, classification) or to scored answer lists (``qa``, question
        answering): a field that does not fit the group's model is a 422."""
        body = parse_body(await request.body(), ClassifyRequest)
        scored, headers = await score(request, state, body.group, body.inputs(), timeout)
        result = scored.results if body.is_batch else scored.results[0]
        return JSONResponse({"result": result}, headers=headers)

    @app.get("/healthz", response_model=HealthResponse, responses={503: ERROR_RESPONSES[503]})
    async def healthz() -> JSONResponse:
        """200 once every consumer group has a ready reader; 503 while loading or shutting down."""
        if not state.accepting:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        ready = registry.serving()
        return JSONResponse({"status": "ok" if ready else "loading"}, status_code=200 if ready else 503)

    @app.get("/status")
    async def status() -> JSONResponse:
        """Takeoff's status: ``live_readers`` keyed by reader id (what deployment probes read)."""
        return JSONResponse(registry.status())

    app.include_router(embed_router(state))
    app.include_router(rerank_router(state))
    app.include_router(zero_shot_router(state))
    app.include_router(groups_router(state))
    app.include_router(playground_router())
    app.add_middleware(ServerMiddleware, state=state, app_name="inference", limit_body=True, drains=True)
    return app
