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
from assay.models.adapter import Capabilities, Inputs, TaskAdapter

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


#: A group's status is its most serving reader's: one ready reader makes the group ready.
_STATUS_ORDER = (
    ReaderStatus.READY, ReaderStatus.LOADING, ReaderStatus.STOPPING, ReaderStatus.DEAD, ReaderStatus.FAILED,
    ReaderStatus.STOPPED,
)


@dataclass
class GroupSummary:
    """A consumer group as a client sees it: which model, doing what, how it is doing; no reader to manage."""

    #: The group's name, what requests send as consumer_group.
    name: str
    #: The model every reader of the group serves.
    model_name: str
    #: The model's task (classification, question_answering...); None until a reader has loaded it.
    task: str | None
    #: The precision the group runs in.
    dtype: str
    #: The most serving reader's status: ready, loading, stopping, dead, failed or stopped.
    status: str
    #: Readers in the group.
    readers: int
    #: How many of them serve.
    ready_readers: int
    #: Longest sequence in tokens; None until loaded when the config leaves it to the model.
    max_sequence_length: int | None
    #: Why the group cannot serve (a reader's load or crash error), when it cannot.
    error: str | None
    #: What the model can be asked for; the defaults (nothing beyond its task) until it is loaded.
    capabilities: Capabilities


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

    def summary(self) -> GroupSummary:
        """The group as GET /groups lists it, from its most serving reader."""
        readers = sorted(self.readers.values(), key=lambda r: _STATUS_ORDER.index(r.status))
        lead = readers[0]
        adapter = lead.adapter
        serving = lead.status is ReaderStatus.READY
        return GroupSummary(
            name=self.name,
            model_name=lead.config.model_name,
            task=adapter.task_name if adapter else None,
            dtype=lead.config.dtype,
            status=lead.status.value,
            readers=len(readers),
            ready_readers=sum(r.status is ReaderStatus.READY for r in readers),
            max_sequence_length=adapter.loaded.max_length if adapter else lead.config.max_sequence_length,
            error=None if serving else next((r.error for r in readers if r.error), None),
            capabilities=adapter.capabilities() if adapter else Capabilities(),
        )

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
