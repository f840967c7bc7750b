"""One reader as a Ray Serve replica: the single-machine consumer group, queue and reader behind ``score``.

Every replica of a group's deployment runs this class, so batching, tasks and reader faults are exactly those of
the single-machine server; Ray adds placement, restarts and the routing of requests between replicas.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from assay.config import ReaderConfig
from assay.engine.group import GroupSummary, Scored
from assay.engine.reader import ReaderStatus
from assay.engine.registry import ReaderRegistry
from assay.errors import AssayError
from assay.models.adapter import Inputs

log = logging.getLogger(__name__)


class ReaderLoadFailed(AssayError):
    """The replica's model did not load: its constructor fails and Ray Serve reports the deployment failed."""

    status = 503
    type = "not_ready"


@dataclass
class ReplicaReply:
    """A request's results and which replica served it, with that replica's counters."""

    #: The results, as a single-machine group returns them.
    scored: Scored
    #: The Ray Serve replica that ran the request.
    replica_id: str
    #: Batches the replica's reader has run so far.
    batches_run: int
    #: Inputs the replica's reader has run so far.
    items_run: int


class GroupReplica:
    """One reader of a consumer group; Ray Serve routes the group's requests between its replicas."""

    def __init__(self, reader: dict[str, Any], max_queued: int) -> None:
        context = serve.get_replica_context()
        #: Ray Serve's id of this replica: the reader's id inside the replica, in logs and metrics.
        self.replica_id: str = context.replica_id.unique_id
        config = ReaderConfig.model_validate({**reader, "reader_id": self.replica_id})
        self.registry = ReaderRegistry(max_queued=max_queued)
        self.reader = self.registry.add_reader(config)
        # Serve routes to a replica only once its constructor returns: returning when loaded means no request
        # ever meets a loading replica, so a group scaling up under traffic fails nothing.
        self.reader.loaded.wait()
        if self.reader.status is not ReaderStatus.READY:
            error = self.reader.error
            self.registry.close()
            raise ReaderLoadFailed(f"reader of '{config.consumer_group}' failed to load {config.model_name}: {error}")
        self.group = self.registry.group(config.consumer_group)
        log.info("replica %s of group '%s' ready on node %s (pid %d)", self.replica_id, config.consumer_group,
                 ray.get_runtime_context().get_node_id(), os.getpid())

    async def score(self, inputs: Inputs, timeout: float | None) -> ReplicaReply:
        """The group's ``score``, on this replica's queue; a cancelled call drops the queued work."""
        scored = await self.group.score(inputs, timeout=timeout)
        return ReplicaReply(scored, self.replica_id, self.reader.batches_run, self.reader.items_run)

    def summary(self) -> GroupSummary:
        """What the loaded model is and accepts (every replica of a group serves the same model)."""
        return self.group.summary()

    def check_health(self) -> None:
        """Ray Serve's health check: a reader whose thread died makes Serve replace the replica."""
        if self.reader.status is not ReaderStatus.READY:
            raise RuntimeError(f"reader {self.replica_id} is {self.reader.status.value}: {self.reader.error}")

    def __del__(self) -> None:
        # Ray Serve calls this on a graceful stop, after the replica's requests in flight have finished.
        registry = getattr(self, "registry", None)
        if registry is not None:
            registry.close()
