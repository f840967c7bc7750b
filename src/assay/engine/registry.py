"""Every reader and consumer group of one server: adding, removing, routing and reporting them."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from assay.config import ReaderConfig, new_reader_id
from assay.engine.group import ConsumerGroup, GroupSummary
from assay.engine.reader import AdapterOpener, Reader, ReaderStatus
from assay.errors import Conflict, NotFound
from assay.models.loading import resolve_dtype
from assay.models.tasks import open_adapter

log = logging.getLogger(__name__)


def open_reader_adapter(config: ReaderConfig):
    """Load the model a reader config names."""
    return open_adapter(
        config.model_name, device=config.device, dtype=config.dtype, max_sequence_length=config.max_sequence_length
    )


class ReaderRegistry:
    """Owns the groups and readers; the API layer asks it to route requests and to manage readers."""

    def __init__(self, *, max_queued: int, opener: AdapterOpener = open_reader_adapter) -> None:
        self.groups: dict[str, ConsumerGroup] = {}
        self.readers: dict[str, Reader] = {}
        self._max_queued = max_queued
        self._opener = opener
        self._lock = threading.Lock()
        # Tokenization and decoding run here, off the event loop and beside the readers' forward passes.
        self.executor = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 2), thread_name_prefix="assay-cpu")

    def add_reader(self, config: ReaderConfig) -> Reader:
        """Create a reader and start loading its model in the background."""
        if config.reader_id is None:
            config = config.model_copy(update={"reader_id": new_reader_id()})
        with self._lock:
            if config.reader_id in self.readers:
                raise Conflict(f"a reader with id '{config.reader_id}' already exists")
            group = self.groups.get(config.consumer_group)
            if group is None:
                group = self.groups[config.consumer_group] = ConsumerGroup(
                    config.consumer_group, self._max_queued, self.executor
                )
            config = config.model_copy(update={"dtype": self._group_dtype(group, config)})
            reader = Reader(config, group, self._opener)
            group.readers[reader.reader_id] = reader
            self.readers[reader.reader_id] = reader
        reader.start()
        return reader

    @staticmethod
    def _group_dtype(group: ConsumerGroup, config: ReaderConfig) -> str:
        """The reader's effective dtype: one group serves one model at one precision, so its results agree.

        ``auto`` joins the precision of the group's live readers (takeoff-client cannot send a dtype at all);
        an explicit dtype or a model that differs from theirs is a conflict.
        """
        live = [other.config for other in group.readers.values() if other.is_live]
        own = str(resolve_dtype(config.dtype, config.device)).removeprefix("torch.")
        if not live:
            return own
        if live[0].model_name != config.model_name:
            raise Conflict(
                f"consumer group '{config.consumer_group}' serves model '{live[0].model_name}'; "
                f"a reader of '{config.model_name}' belongs in another group"
            )
        if config.dtype == "auto":
            return live[0].dtype
        if own != live[0].dtype:
            raise Conflict(
                f"consumer group '{config.consumer_group}' runs in {live[0].dtype}; a {own} reader would "
                "give different scores for the same input: leave dtype out (auto) or use another group"
            )
        return own

    def remove_reader(self, reader_id: str) -> Reader:
        """Stop a reader (it finishes its batch in hand) and forget it; join it with ``reader.join``."""
        with self._lock:
            reader = self.readers.pop(reader_id, None)
            if reader is None:
                raise NotFound(f"no reader with id '{reader_id}'; readers: {sorted(self.readers) or 'none'}")
            reader.stop()
            group = reader.group
            group.readers.pop(reader_id, None)
            if not group.readers:
                self.groups.pop(group.name, None)
        group.reader_changed()
        return reader

    def group(self, name: str) -> ConsumerGroup:
        """The group a request names, or 404 naming the groups that exist."""
        group = self.groups.get(name)
        if group is None or not group.readers:
            known = ", ".join(sorted(self.groups)) or "none"
            raise NotFound(f"consumer group '{name}' does not exist; existing groups: {known}")
        return group

    async def create_reader(self, config: ReaderConfig) -> dict[str, Any]:
        return self.add_reader(config).describe()

    async def delete_reader(self, reader_id: str) -> dict[str, Any]:
        """Remove the reader and wait (off the event loop) until it has finished its batch in hand and unloaded."""
        reader = self.remove_reader(reader_id)
        await asyncio.get_running_loop().run_in_executor(None, reader.join, 60.0)
        return {"reader_id": reader_id, "status": reader.status.value}

    def reader_config(self, reader_id: str) -> dict[str, Any]:
        return self.reader(reader_id).config.model_dump()

    def serving(self) -> bool:
        return bool(self.groups) and all(
            any(r.status is ReaderStatus.READY for r in g.readers.values()) for g in self.groups.values()
        )

    def reader(self, reader_id: str) -> Reader:
        reader = self.readers.get(reader_id)
        if reader is None:
            raise NotFound(f"no reader with id '{reader_id}'; readers: {sorted(self.readers) or 'none'}")
        return reader

    def reader_groups(self) -> dict[str, list[dict[str, Any]]]:
        return {name: group.describe() for name, group in sorted(self.groups.items())}

    def group_summaries(self) -> list[GroupSummary]:
        """Every group with a reader, by name: what each serves and whether it can (GET /groups)."""
        return [group.summary() for _, group in sorted(self.groups.items()) if group.readers]

    def status(self) -> dict[str, Any]:
        """Takeoff's /status: live_readers keyed by reader id, plus those that are not serving."""
        live = {r.reader_id: r.describe() for r in self.readers.values() if r.status is ReaderStatus.READY}
        other = {r.reader_id: r.describe() for r in self.readers.values() if r.status is not ReaderStatus.READY}
        return {"live_readers": live, "other_readers": other}

    @property
    def all_ready(self) -> bool:
        """True when there is at least one reader and every reader has finished loading successfully."""
        return bool(self.readers) and all(r.status is ReaderStatus.READY for r in self.readers.values())

    async def wait_loaded(self) -> None:
        loop = asyncio.get_running_loop()
        for reader in list(self.readers.values()):
            await loop.run_in_executor(None, reader.loaded.wait)

    def close(self, timeout: float = 10.0) -> None:
        """Stop every reader and wait for them to end."""
        readers = list(self.readers.values())
        for reader in readers:
            reader.stop()
        for reader in readers:
            if not reader.join(timeout):
                log.warning("reader %s did not stop within %.0fs", reader.reader_id, timeout)
        self.executor.shutdown(wait=False, cancel_futures=True)
