"""Abandoned work never reaches the model: a client that disconnects while its request is queued, and a request
whose X-Request-Timeout passes while queued, cost no forward pass.

The one reader is kept busy by a batch that sleeps (tests/faulty_server.py), so the request is surely still queued
when its client leaves or its deadline passes; the reader's ``items_run`` counts what reached the model.
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.reference import reference_logits
from tests.server import RunningServer, start_server

FAULTY = [str(Path(__file__).with_name("faulty_server.py"))]
SLEEP = 3.0


@pytest.fixture(scope="module")
def busy_server(models, tmp_path_factory):
    reader = {"model_name": str(models["tiny-roberta"]), "device": "cpu", "consumer_group": "primary",
              "dtype": "float32", "max_batch_size": 1}
    running = start_server(tmp_path_factory.mktemp("abandoned"), readers={"only": reader}, launcher=FAULTY,
                           env={"FAULT_SLEEP_SECONDS": str(SLEEP)})
    yield running
    running.stop()


def items_run(server: RunningServer) -> int:
    return httpx.get(server.management_url + "/reader_groups").json()["primary"][0]["items_run"]


def classify(server: RunningServer, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.url + "/classify", json={"text": [text]}, headers=headers, timeout=60)


def wait_until_busy(server: RunningServer, pool: ThreadPoolExecutor):
    """Send the sleeping batch and return its future once the reader has it in hand."""
    future = pool.submit(classify, server, "keep the reader busy xyzzysleep")
    time.sleep(0.5)  # ample for one request to be encoded and taken; the reader then sleeps SLEEP seconds
    return future


def test_a_disconnected_clients_queued_work_never_reaches_the_model(busy_server, models):
    start = items_run(busy_server)
    body = json.dumps({"text": ["the client of this request hangs up"]}).encode()
    with ThreadPoolExecutor(2) as pool:
        busy = wait_until_busy(busy_server, pool)
        with socket.create_connection(("127.0.0.1", busy_server.port)) as sock:
            sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.5)  # queued behind the sleeping batch
        assert busy.result().status_code == 200
    # The reader is free again; had the abandoned input stayed queued it would run now.
    text = "served after the hang-up"
    response = classify(busy_server, text)
    assert response.status_code == 200
    assert response.json()["result"][0] == pytest.approx(reference_logits(models["tiny-roberta"], text), abs=1e-4)
    assert items_run(busy_server) == start + 2  # the busy batch and the last request, not the abandoned one


def test_a_request_past_its_deadline_is_dropped_before_the_model(busy_server):
    start = items_run(busy_server)
    with ThreadPoolExecutor(2) as pool:
        busy = wait_until_busy(busy_server, pool)
        began = time.monotonic()
        late = classify(busy_server, "too late for me", headers={"X-Request-Timeout": "0.5"})
        waited = time.monotonic() - began
        assert busy.result().status_code == 200
    assert late.status_code == 504, late.text
    assert late.json()["error"]["type"] == "deadline_exceeded"
    assert waited < SLEEP + 5  # answered at its deadline, not held for the model (generous: loaded CI)
    classify(busy_server, "flush")
    assert items_run(busy_server) == start + 2


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_request_timeout_is_422(busy_server, value):
    response = classify(busy_server, "x", headers={"X-Request-Timeout": value})
    assert response.status_code == 422
    assert "X-Request-Timeout" in response.json()["error"]["message"]
