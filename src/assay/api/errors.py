"""One error format for every failure: ``{"error": {"type", "message", "request_id"}}`` with the right status.

Validation problems become 422 (400 when the body is not JSON at all); an unexpected exception becomes 500 with a
request id that is also in the log, never a traceback.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from assay.api.responses import JSONResponse
from assay.errors import AssayError, ConfigError

log = logging.getLogger("assay.api")

ERROR_EXAMPLE = {"error": {"type": "invalid_input", "message": "text must not be an empty list", "request_id": "…"}}


def request_id(request: Request) -> str:
    """The request's id: the client's X-Request-Id if it sent one, else a fresh one."""
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
    return rid


def error_response(
    request: Request, status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    rid = request_id(request)
    body = {"error": {"type": type_, "message": message, "request_id": rid}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "X-Request-Id": rid})


def describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    """Status, type and a one-line message naming each offending field."""
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return 400, "malformed_json", "the request body is not valid JSON"
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) if loc else "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            parts.append(f"field '{where}' is required")
        elif err.get("type") == "extra_forbidden":
            parts.append(f"unknown field '{where}'")
        elif err.get("type") in ("model_attributes_type", "dict_type") and not loc:
            parts.append("the body must be a JSON object")
        else:
            parts.append(f"{where}: {msg}")
    return 422, "invalid_input", "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AssayError)
    async def _assay_error(request: Request, exc: AssayError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request %s failed: %s", request_id(request), exc.message)
        return error_response(request, exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(ConfigError)
    async def _config_error(request: Request, exc: ConfigError) -> JSONResponse:
        return error_response(request, 422, "invalid_config", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, type_, message = describe_validation(exc)
        return error_response(request, status, type_, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return error_response(request, exc.status_code, type_, message, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        log.error("request %s: unexpected error", rid, exc_info=exc)
        return error_response(
            request, 500, "internal_error", f"internal error; quote request id {rid} when reporting it"
        )
