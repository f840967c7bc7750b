"""The ingress deployment: the inference, management and OpenAI-compatible apps, unchanged, over a RayRegistry.

Its one replica runs the apps with uvicorn on the configured ports of the node it is placed on (the node where
``assay serve --ray`` runs), in a thread with its own event loop, exactly as the single-machine server runs them.
Serve's own HTTP proxy is not used: the ports and the API are Assay's.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from assay.api.state import ServerState
from assay.config import AssayConfig
from assay.distributed.registry import RayRegistry
from assay.server import run_apps

log = logging.getLogger(__name__)

#: How long the constructor waits for the apps to listen before Serve is told the replica failed.
START_TIMEOUT_SECONDS = 120.0


class Ingress:
    """Deploys the configured groups, then serves the HTTP apps until ``drain`` is called."""

    def __init__(self, config: dict[str, Any], log_level: str) -> None:
        self.config = AssayConfig.model_validate(config)
        self.log_level = log_level
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._listening = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="assay-ingress", daemon=True)
        self._thread.start()
        # Serve counts the replica running once this returns: by then the ports listen (or the start failed).
        if not self._listening.wait(START_TIMEOUT_SECONDS):
            raise RuntimeError(f"the HTTP apps did not start within {START_TIMEOUT_SECONDS:.0f}s")
        if self._failure is not None:
            raise RuntimeError(f"the HTTP apps failed to start: {self._failure!r}") from self._failure

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        registry = RayRegistry(self.config.server)
        state = ServerState(registry=registry, config=self.config.server)
        listening = asyncio.Event()
        try:
            await registry.start(self.config.readers)
            apps = asyncio.create_task(run_apps(state, self._stop, log_level=self.log_level, started=listening))
            waiting = asyncio.create_task(listening.wait())
            await asyncio.wait([apps, waiting], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            self._listening.set()
            await apps
        except BaseException as exc:  # a port taken, the controller unreachable: the constructor reports it
            self._failure = exc
            log.exception("the ingress stopped")
        finally:
            registry.close()
            self._listening.set()

    async def drain(self) -> None:
        """Refuse new requests, finish those accepted (up to the drain timeout), close the ports."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.get_running_loop().run_in_executor(
            None, self._thread.join, self.config.server.drain_timeout_seconds + 10
        )

    def check_health(self) -> None:
        """Ray Serve's health check: the apps' thread must be alive (Serve restarts the ingress otherwise)."""
        if not self._thread.is_alive() and (self._stop is None or not self._stop.is_set()):
            raise RuntimeError(f"the HTTP apps stopped: {self._failure!r}")
