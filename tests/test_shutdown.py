"""Graceful shutdown: on SIGTERM the server refuses new work (503, /healthz 503), finishes every accepted request
and exits 0 within the drain timeout."""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.reference import reference_logits
from tests.server import RunningServer, start_server

FAULTY = [str(Path(__file__).with_name("faulty_server.py"))]


def requests_accepted(server: RunningServer) -> float:
    """How many requests have reached the engine (one user-batch observation each)."""
    text = httpx.get(server.management_url + "/metrics").text
    match = re.search(r'assay_user_batch_size_count{consumer_group="primary"} (\S+)', text)
    return float(match.group(1)) if match else 0.0


def test_sigterm_drains_in_flight_requests_and_exits_0(models, tmp_path):
    # SIGINT takes the same handler (server.serve); one signal is enough to prove the drain.
    folder = models["tiny-roberta"]
    # Every batch sleeps 0.5 s and holds 4 inputs: 20 requests take about 2.5 s to drain.
    running = start_server(tmp_path, launcher=FAULTY, env={"FAULT_SLEEP_SECONDS": "0.5"},
                           args=["--model", str(folder), "--dtype", "float32", "--max-batch-size", "4"])
    texts = [f"in flight request {i} xyzzysleep" for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(httpx.post, running.url + "/classify", json={"text": [t]}, timeout=60) for t in texts]
        deadline = time.monotonic() + 30
        while requests_accepted(running) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert requests_accepted(running) == 20
        running.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        refused = httpx.post(running.url + "/classify", json={"text": ["too late"]}, timeout=10)
        health = httpx.get(running.url + "/healthz", timeout=10)
        responses = [future.result() for future in futures]
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "shutting_down"
    assert health.status_code == 503 and health.json()["status"] == "shutting_down"
    for text, response in zip(texts, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["result"][0] == pytest.approx(reference_logits(folder, text), abs=1e-4)
    running.process.wait(30)
    assert running.process.returncode == 0, running.log()
