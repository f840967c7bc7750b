"""A reader: one loaded model on its own thread, taking batches from its consumer group's queue."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from assay import metrics
from assay.allocator import HeapTrimmer, trim_headroom_from_env
from assay.config import ReaderConfig
from assay.engine.queue import BatchPolicy
from assay.engine.work import ReaderGone, Ticket, WorkItem
from assay.errors import AssayError
from assay.models.adapter import PAD_MULTIPLE, TaskAdapter, pad_for_model

if TYPE_CHECKING:
    from assay.engine.group import ConsumerGroup

log = logging.getLogger(__name__)

AdapterOpener = Callable[[ReaderConfig], TaskAdapter]


class ReaderStatus(str, Enum):
    """A reader's life: loading -> ready -> stopping -> stopped; or failed (never loaded) or dead (crashed)."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DEAD = "dead"


class BatchFailed(AssayError):
    """A forward pass or decode raised; only the requests in that batch fail."""

    status = 500
    type = "internal_error"


class Reader:
    """Loads its model in the background, then serves batches until stopped."""

    def __init__(self, config: ReaderConfig, group: ConsumerGroup, opener: AdapterOpener) -> None:
        assert config.reader_id is not None
        self.config = config
        self.reader_id: str = config.reader_id
        self.group = group
        self.status = ReaderStatus.LOADING
        #: Why the reader failed or died, for /reader_groups and /status.
        self.error: str | None = None
        self.adapter: TaskAdapter | None = None
        self.batches_run = 0
        self.items_run = 0
        self.policy = BatchPolicy(
            max_batch_size=config.max_batch_size,
            max_batch_tokens=config.max_batch_tokens,
            max_wait=config.batch_duration_millis / 1000,
            pad_multiple=PAD_MULTIPLE,
        )
        #: Set once loading has ended, in success or failure.
        self.loaded = threading.Event()
        self._opener = opener
        self._trimmer = HeapTrimmer(trim_headroom_from_env())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.reader_id}", daemon=True)

    @property
    def is_live(self) -> bool:
        """Loading or serving: it will (still) take work."""
        return self.status in (ReaderStatus.LOADING, ReaderStatus.READY)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop taking new work; the batch in hand finishes, then the model is unloaded."""
        if self.status in (ReaderStatus.READY, ReaderStatus.LOADING):
            self.status = ReaderStatus.STOPPING
        self._stop.set()
        self.group.queue.wake()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def describe(self) -> dict[str, object]:
        """What the management API and /status report for this reader."""
        adapter = self.adapter
        return {
            "reader_id": self.reader_id,
            "model_name": self.config.model_name,
            "device": self.config.device,
            "consumer_group": self.config.consumer_group,
            "status": self.status.value,
            "task": adapter.task_name if adapter else None,
            "dtype": str(adapter.loaded.dtype).removeprefix("torch.") if adapter else None,
            "max_batch_size": self.config.max_batch_size,
            "batch_duration_millis": self.config.batch_duration_millis,
            "max_sequence_length": adapter.loaded.max_length if adapter else self.config.max_sequence_length,
            "batches_run": self.batches_run,
            "items_run": self.items_run,
            "error": self.error,
        }

    def _run(self) -> None:
        try:
            self.adapter = self._opener(self.config)
        except Exception as exc:  # any load failure is reported, never raised into the server
            self.error = str(exc) if isinstance(exc, AssayError) else f"{type(exc).__name__}: {exc}"
            self.status = ReaderStatus.FAILED
            log.error("reader %s failed to load %s: %s", self.reader_id, self.config.model_name, self.error)
            self.loaded.set()
            self.group.reader_changed()
            return
        if self._stop.is_set():
            self.status = ReaderStatus.STOPPING
        else:
            self.status = ReaderStatus.READY
            log.info("reader %s ready in group '%s'", self.reader_id, self.group.name)
        self.loaded.set()
        self.group.reader_changed()
        batch: list[WorkItem] = []
        try:
            while not self._stop.is_set():
                batch = self.group.queue.take(self.policy, self._stop, idle_after=self._trimmer.idle_timeout())
                if batch:
                    self._run_batch(batch)
                    self._trimmer.after_batch()
                else:
                    self._trimmer.when_idle()
                batch = []
        except BaseException as exc:  # the thread is ending abnormally: report it dead, lose nothing silently
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = ReaderStatus.DEAD
            log.exception("reader %s died", self.reader_id)
            self.adapter = None
            # The batch in hand cannot be retried safely (it may be what killed the reader): fail it. What is
            # still queued stays in the group's shared queue for the other readers, or fails in reader_changed.
            error = ReaderGone(f"reader '{self.reader_id}' died while running the batch holding this request")
            for ticket in {id(item.ticket): item.ticket for item in batch}.values():
                ticket.fail(error)
            self.group.reader_changed()
            return
        self.status = ReaderStatus.STOPPED
        self.adapter = None
        gc.collect()
        log.info("reader %s stopped and unloaded", self.reader_id)
        self.group.reader_changed()

    def _run_batch(self, batch: list[WorkItem]) -> None:
        adapter = self.adapter
        assert adapter is not None
        group = self.group.name
        started = time.monotonic()
        for item in batch:
            metrics.QUEUE_TIME.labels(group).observe(started - item.enqueued_at)
        try:
            types = [item.token_type_ids for item in batch] if batch[0].token_type_ids is not None else None
            padded = pad_for_model(adapter, [item.input_ids for item in batch], types)
            outputs = adapter.forward(padded)
        except Exception as exc:
            metrics.READER_FAILED_BATCHES.labels(group, self.reader_id).inc()
            log.exception("reader %s: a batch of %d inputs failed", self.reader_id, len(batch))
            error = BatchFailed(f"the model failed on a batch holding this request: {type(exc).__name__}")
            for ticket in {id(item.ticket): item.ticket for item in batch}.values():
                ticket.fail(error)
            return
        elapsed = time.monotonic() - started
        self.batches_run += 1
        self.items_run += len(batch)
        metrics.READER_BATCHES.labels(group, self.reader_id).inc()
        metrics.READER_FORWARD_SECONDS.labels(group, self.reader_id).inc(elapsed)
        metrics.MODEL_BATCH_SIZE.labels(group).observe(len(batch))
        metrics.BATCH_TOKENS.labels(group).observe(padded.input_ids.numel())
        by_ticket: dict[int, tuple[Ticket, list[tuple[int, np.ndarray]]]] = {}
        for item, output in zip(batch, outputs, strict=True):
            by_ticket.setdefault(id(item.ticket), (item.ticket, []))[1].append((item.index, output))
        for ticket, results in by_ticket.values():
            ticket.deliver(results)
