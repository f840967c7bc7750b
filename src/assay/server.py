"""Run a server: build the registry from a config, start the readers, serve the three apps (inference, management,
OpenAI-compatible) in one event loop.

SIGTERM or SIGINT drains: new requests on the inference and OpenAI-compatible ports get 503, accepted ones finish
(up to the drain timeout), readers stop, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator

import uvicorn

from assay.api.inference import create_inference_app
from assay.api.management import create_management_app
from assay.api.openai import create_openai_app
from assay.api.state import ServerState
from assay.config import AssayConfig
from assay.engine.registry import ReaderRegistry

log = logging.getLogger(__name__)


class _QuietSignalsServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (three servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_state(config: AssayConfig) -> ServerState:
    registry = ReaderRegistry(max_queued=config.server.max_queued_requests)
    for reader_config in config.readers:
        registry.add_reader(reader_config)
    return ServerState(registry=registry, config=config.server)


async def serve(config: AssayConfig, *, log_level: str = "info") -> None:
    """Serve until a signal asks to stop, then drain."""
    state = build_state(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_apps(state, stop, log_level=log_level)
    finally:
        await loop.run_in_executor(None, state.registry.close)
    log.info("stopped")


async def run_apps(state: ServerState, stop: asyncio.Event, *, log_level: str = "info",
                   started: asyncio.Event | None = None) -> None:
    """Serve the three apps over ``state`` until ``stop`` is set, then drain accepted requests.

    The one way the apps are run: by ``serve`` in this process, and by the Ray ingress over a RayRegistry.
    ``started`` is set once every app listens.
    """
    server_cfg = state.config
    servers = [
        _QuietSignalsServer(uvicorn.Config(
            create_inference_app(state), host=server_cfg.host, port=server_cfg.port, log_level=log_level,
            access_log=False, timeout_graceful_shutdown=server_cfg.drain_timeout_seconds, lifespan="off",
        )),
        _QuietSignalsServer(uvicorn.Config(
            create_management_app(state), host=server_cfg.management_host, port=server_cfg.management_port,
            log_level=log_level, access_log=False, lifespan="off",
        )),
        _QuietSignalsServer(uvicorn.Config(
            create_openai_app(state), host=server_cfg.host, port=server_cfg.openai_port, log_level=log_level,
            access_log=False, timeout_graceful_shutdown=server_cfg.drain_timeout_seconds, lifespan="off",
        )),
    ]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    stopped = asyncio.create_task(stop.wait())
    while not all(server.started for server in servers) and not any(task.done() for task in tasks):
        await asyncio.sleep(0.02)
    if all(server.started for server in servers):
        log.info(
            "Assay listening: inference http://%s:%d, management http://%s:%d, OpenAI-compatible http://%s:%d",
            server_cfg.host, server_cfg.port, server_cfg.management_host, server_cfg.management_port,
            server_cfg.host, server_cfg.openai_port,
        )
        if started is not None:
            started.set()
    done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopped and task.exception() is not None:
            for server in servers:
                server.should_exit = True
            stopped.cancel()
            raise task.exception()  # a server failed to start (port taken...)
    log.info("shutting down: refusing new requests, finishing %d in flight", state.in_flight)
    state.accepting = False
    deadline = time.monotonic() + server_cfg.drain_timeout_seconds
    while state.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if state.in_flight:
        log.warning("drain timeout: %d requests still in flight", state.in_flight)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
