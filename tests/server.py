"""Start a real ``assay serve`` process on free ports and wait until it is ready."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all are held open until the last is bound, so the kernel cannot hand
    out the same port twice (closing each before asking for the next once gave a server one port for two apps)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class RunningServer:
    """A server process and where to reach it."""

    process: subprocess.Popen
    port: int
    management_port: int
    #: Port of the OpenAI-compatible app: takeoff-client's ``oai_port``, the OpenAI SDK's base URL.
    openai_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.openai_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    tmp: Path,
    *,
    readers: dict[str, dict] | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    timeout: float = 180,
    launcher: list[str] | None = None,
    cwd: Path | None = None,
    server_config: dict | None = None,
) -> RunningServer:
    """Start ``assay serve`` (with a manifest when ``readers`` is given) and wait for /healthz.

    ``launcher`` replaces ``-m assay.cli`` (tests/faulty_server.py injects faults into a real server); ``cwd`` is
    where relative model folders are found; ``server_config`` goes into the manifest beside ``readers``.
    """
    port, management_port, openai_port = free_ports(3)
    command = [sys.executable, *(launcher or ["-m", "assay.cli"]), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--management-port", str(management_port), "--openai-port", str(openai_port), *(args or [])]
    if readers is not None:
        manifest = tmp / f"manifest-{port}.yaml"
        body = {"readers_config": readers, **({"server_config": server_config} if server_config else {})}
        manifest.write_text(yaml.safe_dump({"takeoff": body}))
        command += ["--config", str(manifest)]
    log_path = tmp / f"server-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TAKEOFF_")}
    full_env.update(env or {})
    process = subprocess.Popen(command, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    server = RunningServer(process, port, management_port, openai_port, log_path)
    if wait_ready:
        wait_healthy(server, timeout)
    return server


def wait_healthy(server: RunningServer, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log()}")
