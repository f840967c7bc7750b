"""A consumer group: one queue, the readers that share it, and the path of a request through them."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from assay import metrics
from assay.engine.queue import TokenBudgetQueue
from assay.engine.reader import Reader, ReaderStatus
from assay.engine.work import DeadlineExceeded, ReaderGone, Ticket, WorkItem
from assay.errors import NotReady
from assay.models.adapter import Inputs, TaskAdapter

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """A request's results, one per input in input order, and which inputs were truncated."""

    #: One result per input.
    results: list[Any]
    #: Indices of inputs cut to the maximum sequence length.
    truncated: list[int]
    #: Tokens the model ran for the request, padding left out (OpenAI's usage counts them).
    tokens: int = 0


class ConsumerGroup:
    """Requests named for this group are queued here; any ready reader of the group takes the next batch."""

    def __init__(self, name: str, max_queued: int, executor: Executor) -> None:
        self.name = name
        self.queue = TokenBudgetQueue(name, max_queued)
        self.readers: dict[str, Reader] = {}
        self._executor = executor

    def serving_adapter(self) -> TaskAdapter:
        """The adapter that encodes and decodes for this group (every reader of a group serves one model)."""
        for reader in self.readers.values():
            adapter = reader.adapter
            if reader.status is ReaderStatus.READY and adapter is not None:
                return adapter
        if any(r.status is ReaderStatus.LOADING for r in self.readers.values()):
            raise NotReady(
                f"consumer group '{self.name}' is still loading its model; retry shortly",
                headers={"Retry-After": "5"},
            )
        states = ", ".join(f"{r.reader_id}: {r.status.value}" for r in self.readers.values()) or "no readers"
        raise NotReady(f"consumer group '{self.name}' has no reader that can serve ({states})")

    def describe(self) -> list[dict[str, object]]:
        return [reader.describe() for reader in self.readers.values()]

    async def score(self, inputs: Inputs, *, timeout: float | None = None) -> Scored:
        """Encode, queue, wait for every feature's output, decode. Cancelling this drops the queued work."""
        adapter = self.serving_adapter()
        adapter.check(inputs)
        loop = asyncio.get_running_loop()
        metrics.USER_BATCH_SIZE.labels(self.name).observe(len(inputs.items))
        features = await loop.run_in_executor(self._executor, adapter.encode, inputs)
        if features.truncated:
            metrics.TRUNCATED_INPUTS.labels(self.name).inc(len(features.truncated))
        ticket = Ticket(len(features.input_ids), loop)
        if timeout is not None:
            ticket.deadline = time.monotonic() + timeout
        types = features.token_type_ids
        items = [
            WorkItem(ticket=ticket, index=i, input_ids=ids, token_type_ids=types[i] if types is not None else None)
            for i, ids in enumerate(features.input_ids)
        ]
        self.queue.put(items)
        metrics.QUEUE_DEPTH.labels(self.name).set(len(self.queue))
        # The last reader may have gone while this request was encoding: then nobody would ever take its items.
        self.reader_changed()
        try:
            outputs = await self._wait(ticket)
        except asyncio.CancelledError:
            ticket.cancelled = True  # the queue drops its items before they reach the model
            raise
        finally:
            metrics.QUEUE_DEPTH.labels(self.name).set(len(self.queue))
        results = await loop.run_in_executor(self._executor, adapter.decode, inputs, features, outputs)
        tokens = sum(len(ids) for ids in features.input_ids)
        return Scored(results=results, truncated=features.truncated, tokens=tokens)

    @staticmethod
    async def _wait(ticket: Ticket) -> list[Any]:
        """The ticket's outputs; at its deadline the request fails at once rather than when a reader next looks."""
        if ticket.deadline is None:
            return await ticket.future
        try:
            return await asyncio.wait_for(ticket.future, max(0.0, ticket.deadline - time.monotonic()))
        except TimeoutError:
            ticket.cancelled = True
            raise DeadlineExceeded("the request's deadline (X-Request-Timeout) passed before it was served") from None

    def reader_changed(self) -> None:
        """Called from reader threads: when no reader is left to take work, fail what waits."""
        if any(reader.is_live for reader in self.readers.values()):
            return
        stranded = self.queue.drain()
        if stranded:
            log.warning("group '%s' has no live reader: failing %d queued inputs", self.name, len(stranded))
            error = ReaderGone(f"consumer group '{self.name}' lost its last reader before serving this request")
            for ticket in {id(item.ticket): item.ticket for item in stranded}.values():
                ticket.fail(error)
