"""What the HTTP apps need from an engine: the ``Registry`` protocol.

Two engines implement it: ``ReaderRegistry`` (readers as threads of this process) and, with ``--ray``,
``assay.distributed.registry.RayRegistry`` (readers as replicas of Ray Serve deployments). The apps are the same
over both, so a request travels the same API whichever engine serves it.
"""

from __future__ import annotations

from typing import Any, Protocol

from assay.config import ReaderConfig
from assay.engine.group import GroupSummary, Scored
from assay.models.adapter import Inputs


class GroupRoute(Protocol):
    """Where a request for one consumer group goes."""

    async def score(self, inputs: Inputs, *, timeout: float | None = None) -> Scored:
        """The group's results for ``inputs``; cancelling the call drops the queued work."""


class Registry(Protocol):
    """Every reader and consumer group of one server, as the inference and management apps see them."""

    def group(self, name: str) -> GroupRoute:
        """The group a request names, or NotFound naming the groups that exist."""

    async def create_reader(self, config: ReaderConfig) -> dict[str, Any]:
        """Add a reader (its model loads in the background); returns it as /reader_groups lists it."""

    async def delete_reader(self, reader_id: str) -> dict[str, Any]:
        """Remove a reader once its work in hand is done: ``{"reader_id", "status"}``."""

    def reader_config(self, reader_id: str) -> dict[str, Any]:
        """The reader's effective config, or NotFound."""

    def reader_groups(self) -> dict[str, list[dict[str, Any]]]:
        """Readers by consumer group, as ``GET /reader_groups`` answers."""

    def group_summaries(self) -> list[GroupSummary]:
        """Every group with a reader, by name (``GET /groups``)."""

    def status(self) -> dict[str, Any]:
        """Takeoff's /status: ``live_readers`` and ``other_readers`` keyed by reader id."""

    def serving(self) -> bool:
        """True when there is a group and every group has a reader that serves (/healthz)."""

    def close(self) -> None:
        """Stop every reader (blocking)."""
