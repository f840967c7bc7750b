"""ASGI middleware: request ids, metrics, draining on shutdown, the management bearer token, and the body size
limit enforced while reading."""

from __future__ import annotations

import hmac
import time
import uuid

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assay import metrics
from assay.api.state import ServerState

#: Paths answered even while draining (probes must see the server going down, not a refusal).
_ALWAYS_ANSWERED = {"/healthz", "/status", "/metrics"}


async def _send_error(send: Send, status: int, type_: str, message: str, rid: str, headers: dict[str, str]) -> None:
    body = orjson.dumps({"error": {"type": type_, "message": message, "request_id": rid}})
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", rid.encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(HTTPException):
    """Raised from receive() once the body passes the limit (an HTTPException, so FastAPI keeps it a 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


def token_matches(authorization: bytes | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time so the token cannot be guessed byte by byte."""
    scheme, _, given = (authorization or b"").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given, token.encode())


class ServerMiddleware:
    """Wraps an app: counts and times requests, refuses new work while draining, checks the bearer token, caps
    the body size."""

    def __init__(self, app: ASGIApp, state: ServerState, app_name: str, limit_body: bool,
                 require_token: bool = False, drains: bool = False) -> None:
        self.app = app
        self.state = state
        self.app_name = app_name
        self.limit_body = limit_body
        #: An app that runs models: refuses new work while the server drains, and counts what is in flight.
        self.drains = drains
        #: Check TAKEOFF_MANAGEMENT_TOKEN (when set) on every call, the OpenAPI schema and docs included.
        self.require_token = require_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = (headers.get(b"x-request-id") or b"").decode("latin-1") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        path = scope["path"]
        route = _route_label(scope)
        started = time.monotonic()
        status_holder = {"status": 500}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                if not any(k == b"x-request-id" for k, _ in message["headers"]):
                    message["headers"] = list(message["headers"]) + [(b"x-request-id", rid.encode())]
            await send(message)

        try:
            if self.drains and not self.state.accepting and path not in _ALWAYS_ANSWERED:
                await _send_error(send_tracked, 503, "shutting_down", "the server is shutting down", rid,
                                  {"Connection": "close"})
                return
            token = self.state.config.management_token
            if self.require_token and token and not token_matches(headers.get(b"authorization"), token):
                await _send_error(send_tracked, 401, "unauthorized",
                                  "this management API needs 'Authorization: Bearer <TAKEOFF_MANAGEMENT_TOKEN>'", rid,
                                  {"WWW-Authenticate": "Bearer"})
                return
            limit = self.state.config.body_size_limit_bytes
            if self.limit_body:
                declared = headers.get(b"content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    await _send_error(send_tracked, 413, "too_large",
                                      f"request body is {int(declared)} bytes; the limit is {limit} bytes", rid, {})
                    return
                receive = _limited_receive(receive, limit)
            counted = self.drains and path not in _ALWAYS_ANSWERED
            if counted:
                self.state.in_flight += 1
            try:
                await self.app(scope, receive, send_tracked)
            except BodyTooLarge:
                await _send_error(send_tracked, 413, "too_large", f"request body exceeds the limit of {limit} bytes",
                                  rid, {})
            finally:
                if counted:
                    self.state.in_flight -= 1
        finally:
            metrics.HTTP_REQUESTS.labels(self.app_name, route, str(status_holder["status"])).inc()
            metrics.HTTP_DURATION.labels(self.app_name, route).observe(time.monotonic() - started)


def _limited_receive(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


def _route_label(scope: Scope) -> str:
    """A bounded label for metrics: reader ids are collapsed so label cardinality stays small."""
    path: str = scope["path"]
    for prefix in ("/reader/", "/config/"):
        if path.startswith(prefix):
            return prefix + "{reader_id}"
    return path if path.count("/") <= 2 and len(path) < 40 else "other"
