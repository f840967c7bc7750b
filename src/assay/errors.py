"""Errors that travel from the engine and models up to the HTTP layer.

Each error carries a stable machine-readable ``type`` and the HTTP status it maps to, so the API layer
has one place that turns any of them into the same JSON shape.
"""

from __future__ import annotations


class AssayError(Exception):
    """Base class: a failure a client can be told about."""

    status: int = 500
    type: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(AssayError):
    """The body parsed, but its shape or content does not fit the endpoint or the model."""

    status = 422
    type = "invalid_input"


class MalformedBody(AssayError):
    """The body is not JSON at all."""

    status = 400
    type = "malformed_json"


class NotFound(AssayError):
    """An unknown consumer group or reader."""

    status = 404
    type = "not_found"


class Conflict(AssayError):
    """The request contradicts the server's current state (a reader id that already exists, say)."""

    status = 409
    type = "conflict"


class TooLarge(AssayError):
    """A body, a batch or a text over its configured limit."""

    status = 413
    type = "too_large"


class Overloaded(AssayError):
    """The consumer group's queue is full: retry later."""

    status = 429
    type = "overloaded"


class NotReady(AssayError):
    """No reader can serve yet (still loading, dead) or the server is shutting down."""

    status = 503
    type = "not_ready"


class ClientDisconnected(AssayError):
    """The client went away while its request waited: its queued work was dropped (status for logs and metrics)."""

    status = 499
    type = "client_disconnected"


class ModelLoadError(AssayError):
    """A model path or id that cannot be loaded or has no supported head."""

    status = 422
    type = "model_load_error"


class ConfigError(Exception):
    """A configuration that cannot start a server; the message says what to change."""
