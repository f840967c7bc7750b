"""A real `assay serve` subprocess on free loopback ports, and a closed-loop load generator against it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.workload import Request


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


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process, from /proc/PID/status (VmRSS, in kB); VmHWM is its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def memory_sample(pid: int) -> tuple[int, int, int]:
    """RSS, its anonymous part (heap, activations, kernel caches) and its file-backed part (library code paged in)."""
    values = dict.fromkeys(("VmRSS", "RssAnon", "RssFile"), 0)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["RssAnon"], values["RssFile"]


def reset_peak_rss(pid: int) -> None:
    """Restart VmHWM (the peak resident size) from the current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Server:
    """`assay serve` started as a subprocess; ready once GET /healthz answers 200."""

    def __init__(self, model: str, dtype: str, flags: list[str], log_path: Path) -> None:
        # the server binds its OpenAI-compatible port too; 3003 may be taken
        self.port, self.management_port, self.openai_port = free_ports(3)
        self.command = [
            sys.executable, "-m", "assay.cli", "serve", "--model", model, "--dtype", dtype,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--management-host", "127.0.0.1", "--management-port", str(self.management_port),
            "--openai-port", str(self.openai_port), "--log-level", "warning", *flags,
        ]  # fmt: skip
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait for /healthz; return the seconds it took."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        started = time.monotonic()
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"assay serve exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"assay serve not healthy after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LoadResult:
    """One closed-loop run."""

    #: Requests in flight at all times.
    concurrency: int
    #: Requests measured (warm-up excluded).
    requests: int
    #: Pairs in the measured requests.
    pairs: int
    #: Wall seconds of the measured phase.
    seconds: float
    #: Per-request latencies, seconds.
    latencies: list[float]
    #: (completed requests, RSS bytes) samples, when memory was watched.
    rss: list[tuple[int, int]] = field(default_factory=list)
    #: (completed requests, anonymous RSS bytes, file-backed RSS bytes), sampled with ``rss``.
    rss_parts: list[tuple[int, int, int]] = field(default_factory=list)
    #: The logits returned, one list per request, in request order.
    logits: list[list[float]] = field(default_factory=list)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds

    def latency_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000)


async def _closed_loop(
    url: str, requests: list[Request], concurrency: int, pid: int | None, rss_every: int
) -> LoadResult:
    """Each of ``concurrency`` workers sends its next request as soon as its last one is answered."""
    latencies = [0.0] * len(requests)
    logits: list[list[float]] = [[] for _ in requests]
    rss: list[tuple[int, int]] = []
    rss_parts: list[tuple[int, int, int]] = []
    next_index = 0
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600.0, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index, done
            while next_index < len(requests):
                i = next_index
                next_index += 1
                query, docs = requests[i]
                body = {"text": [[query, doc] for doc in docs], "consumer_group": "primary"}
                sent = time.perf_counter()
                response = await client.post("/classify", json=body)
                latencies[i] = time.perf_counter() - sent
                response.raise_for_status()
                logits[i] = [row[0] for row in response.json()["result"]]
                done += 1
                if pid is not None and (done % rss_every == 0 or done == len(requests)):
                    total, anon, mapped = memory_sample(pid)
                    rss.append((done, total))
                    rss_parts.append((done, anon, mapped))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
        seconds = time.perf_counter() - started
    pairs = sum(len(docs) for _, docs in requests)
    return LoadResult(concurrency, len(requests), pairs, seconds, latencies, rss, rss_parts, logits)


def closed_loop(
    url: str,
    requests: list[Request],
    concurrency: int,
    warmup: list[Request] | None = None,
    pid: int | None = None,
    rss_every: int = 50,
) -> LoadResult:
    """Warm up (unmeasured), then run ``requests`` at ``concurrency``; optionally sample the server's RSS."""
    if warmup:
        asyncio.run(_closed_loop(url, warmup, concurrency, None, rss_every))
    return asyncio.run(_closed_loop(url, requests, concurrency, pid, rss_every))
