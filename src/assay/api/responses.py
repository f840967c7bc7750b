"""JSON responses serialized with orjson (numpy arrays included, no per-value Python conversion)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import responses


class JSONResponse(responses.JSONResponse):
    """application/json rendered by orjson (a JSONResponse, so that OpenAPI publishes each route's response model)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
