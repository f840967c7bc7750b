"""The management app (port 3001): list, add and remove readers, read their config, status and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from assay import __version__
from assay.api.errors import install_error_handlers
from assay.api.middleware import ServerMiddleware
from assay.api.responses import JSONResponse
from assay.api.schemas import ERROR_RESPONSES
from assay.api.state import ServerState
from assay.config import ReaderConfig
from assay.errors import InvalidInput


def check_model_root(model_name: str, roots: list[str]) -> None:
    """With model roots configured, a local folder must lie below one of them (hub ids are unaffected)."""
    if not roots:
        return
    looks_local = model_name.startswith(("/", ".", "~")) or Path(model_name).exists()
    if not looks_local:
        return
    resolved = Path(model_name).expanduser().resolve()
    if not any(resolved.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
        raise InvalidInput(f"model folder '{model_name}' is outside the configured model roots")


def create_management_app(state: ServerState) -> FastAPI:
    registry = state.registry

    app = FastAPI(
        title="Assay management API",
        version=__version__,
        description="Readers and consumer groups: list, add, remove; status and Prometheus metrics.",
        default_response_class=JSONResponse,
        responses={401: {"description": "Missing or wrong bearer token (when TAKEOFF_MANAGEMENT_TOKEN is set)."}},
    )
    install_error_handlers(app)

    @app.get("/reader_groups", summary="Readers by consumer group")
    async def reader_groups() -> JSONResponse:
        """``{group: [{"reader_id", "model_name", "device", "status", ...}, ...]}``."""
        return JSONResponse(registry.reader_groups())

    @app.post("/reader", status_code=201, responses={422: ERROR_RESPONSES[422], 409: {"description": "Id taken."}})
    async def create_reader(
        config: dict[str, Any] = Body(
            ..., examples=[{"model_name": "/models/reranker", "device": "cpu", "consumer_group": "rerank"}],
            description="A reader config: model_name, device, consumer_group and optional batching fields.",
        ),
    ) -> JSONResponse:
        """Add a reader; its model loads in the background and it serves once loaded (see its status)."""
        reader_config = ReaderConfig.from_mapping(config, where="reader config")
        check_model_root(reader_config.model_name, state.config.model_roots)
        return JSONResponse(await registry.create_reader(reader_config), status_code=201)

    @app.delete("/reader/{reader_id}", responses={404: ERROR_RESPONSES[404]})
    async def delete_reader(reader_id: str) -> JSONResponse:
        """Stop taking new work, finish the batch in hand, unload; returns once the reader has stopped."""
        return JSONResponse(await registry.delete_reader(reader_id))

    @app.get("/config/{reader_id}", responses={404: ERROR_RESPONSES[404]})
    async def reader_config(reader_id: str) -> JSONResponse:
        """The reader's effective config."""
        return JSONResponse(registry.reader_config(reader_id))

    @app.get("/status")
    async def status() -> JSONResponse:
        """As on the inference port: ``live_readers`` keyed by reader id."""
        return JSONResponse(registry.status())

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus text format."""
        if not state.config.enable_metrics:
            return Response("metrics are disabled\n", status_code=404, media_type="text/plain")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(ServerMiddleware, state=state, app_name="management", limit_body=True, require_token=True)
    return app
