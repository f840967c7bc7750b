"""The plain types that cross the engine: a request's ticket and the work items it is split into."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from assay.errors import AssayError


class Ticket:
    """One request inside the engine: collects per-feature outputs and resolves the request's future.

    Readers call ``deliver`` and ``fail`` from their threads; the future is only touched on its event loop.
    """

    def __init__(self, n_features: int, loop: asyncio.AbstractEventLoop) -> None:
        self.outputs: list[np.ndarray | None] = [None] * n_features
        self.remaining = n_features
        self.loop = loop
        self.future: asyncio.Future[list[np.ndarray]] = loop.create_future()
        #: Set when the client went away or its deadline passed: its items are dropped before the model.
        self.cancelled = False
        #: Monotonic deadline after which queued items are dropped, or None.
        self.deadline: float | None = None
        self._lock = threading.Lock()
        self._finished = False

    def is_abandoned(self, now: float) -> bool:
        """True when nobody waits for this request's results any more."""
        return self.cancelled or self._finished or (self.deadline is not None and now > self.deadline)

    def deliver(self, results: list[tuple[int, np.ndarray]]) -> None:
        """Store outputs for some of this ticket's features; resolve the future with the last one."""
        with self._lock:
            if self._finished:
                return
            for index, output in results:
                if self.outputs[index] is None:
                    self.outputs[index] = output
                    self.remaining -= 1
            done = self.remaining == 0
            if done:
                self._finished = True
        if done:
            self.loop.call_soon_threadsafe(self._resolve, self.outputs)

    def fail(self, error: BaseException) -> None:
        """Fail the whole request (a forward pass raised, the reader died, it was shed)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        self.loop.call_soon_threadsafe(self._reject, error)

    def expire(self) -> None:
        """Called when the queue drops this request's items: fail it if a deadline, not the client, ended it."""
        if self.cancelled:
            with self._lock:
                self._finished = True
            return
        self.fail(DeadlineExceeded("the request's deadline passed before a reader took it"))

    def _resolve(self, outputs: list[np.ndarray]) -> None:
        if not self.future.done():
            self.future.set_result(outputs)

    def _reject(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass
class WorkItem:
    """One feature (a token sequence) of one request, waiting for a reader."""

    #: The request it belongs to.
    ticket: Ticket
    #: Its index among the request's features.
    index: int
    #: Token ids.
    input_ids: np.ndarray
    #: Token types, or None.
    token_type_ids: np.ndarray | None
    #: When it entered the queue (monotonic seconds).
    enqueued_at: float = field(default_factory=time.monotonic)

    @property
    def length(self) -> int:
        return len(self.input_ids)


class ReaderGone(AssayError):
    """The reader holding this work stopped or died before finishing it."""

    status = 503
    type = "reader_unavailable"


class DeadlineExceeded(AssayError):
    """The request's own deadline (X-Request-Timeout) passed while it waited."""

    status = 504
    type = "deadline_exceeded"
