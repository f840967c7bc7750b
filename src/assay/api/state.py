"""What the apps of one server share: the reader registry, the server settings and whether new work is accepted."""

from __future__ import annotations

from dataclasses import dataclass, field

from assay.config import ServerConfig
from assay.engine.backend import Registry


@dataclass
class ServerState:
    """Shared by the inference, management and OpenAI-compatible apps of one server."""

    #: Every reader and group: a ReaderRegistry, or a RayRegistry with --ray.
    registry: Registry
    #: Ports, limits, security.
    config: ServerConfig
    #: False once shutdown has begun: new inference requests get 503.
    accepting: bool = True
    #: Inference requests accepted and not yet answered.
    in_flight: int = field(default=0)
