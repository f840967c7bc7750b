"""The browser playground: a static page at / and /playground that tries each consumer group's model.

The files ship in the package (assay/playground/) and load nothing from the network; the page calls this app's
own endpoints (/groups, /classify, /rerank, /zero_shot, /embed). A Content-Security-Policy keeps it that way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

#: Each file the page is made of, with its media type.
PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

#: Only this origin's scripts, styles and endpoints: the page works offline and cannot be made to call elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def read_page_file(name: str) -> bytes:
    return resources.files("assay").joinpath("playground", name).read_bytes()


def playground_router() -> APIRouter:
    """GET routes for the page and its assets, kept out of the OpenAPI schema (they are not API)."""
    router = APIRouter(include_in_schema=False)
    contents = {name: read_page_file(name) for name in PAGE_FILES}

    def serve(name: str) -> Callable[[], Awaitable[Response]]:
        async def route() -> Response:
            return Response(contents[name], media_type=PAGE_FILES[name], headers=PAGE_HEADERS)

        return route

    for path in ("/", "/playground"):
        router.add_api_route(path, serve("index.html"), methods=["GET", "HEAD"])
    for name in ("app.js", "style.css"):
        router.add_api_route(f"/playground/{name}", serve(name), methods=["GET", "HEAD"])
    return router
