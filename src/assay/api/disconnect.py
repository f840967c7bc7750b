"""Abandoned requests: stop waiting for a result nobody will read.

Starlette does not cancel a handler when its client goes away, so a request whose client left would keep its
inputs queued and spend a forward pass on them. ``until_disconnected`` watches the ASGI receive channel while the
work runs and cancels the work on ``http.disconnect``; cancelling ``ConsumerGroup.score`` drops the queued items.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive

from assay.errors import ClientDisconnected

Result = TypeVar("Result")


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone; the body was read already, so nothing else should arrive."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(request: Request, work: Coroutine[Any, Any, Result]) -> Result:
    """Run ``work``; if the client disconnects first, cancel it and raise ClientDisconnected."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()  # the client left, or this handler itself is being cancelled
    if not task.done() or task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            await task  # let score() mark its ticket cancelled before answering
        raise ClientDisconnected("the client disconnected before its result was ready")
    return task.result()
