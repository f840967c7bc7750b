"""Failure isolation in a real server: a forward pass that raises fails only its batch; a reader whose thread
dies is reported dead, its group keeps serving from the other reader, and nothing waits forever.

Faults are injected by tests/faulty_server.py, which patches the classification forward pass before starting
``assay serve``: production code carries no test hooks.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.reference import reference_logits
from tests.server import RunningServer, start_server

FAULTY = [str(Path(__file__).with_name("faulty_server.py"))]
GOOD = [f"a perfectly ordinary sentence number {i}" for i in range(8)]


def classify(server: RunningServer, text: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(server.url + "/classify", json={"text": [text]}, timeout=timeout)


def readers_by_id(server: RunningServer) -> dict[str, dict]:
    groups = httpx.get(server.management_url + "/reader_groups").json()
    return {reader["reader_id"]: reader for reader in groups["primary"]}


def failed_batches(server: RunningServer, reader_id: str) -> float:
    text = httpx.get(server.management_url + "/metrics").text
    match = re.search(rf'assay_reader_failed_batches_total{{consumer_group="primary",reader_id="{reader_id}"}} (\S+)',
                      text)
    return float(match.group(1)) if match else 0.0


@pytest.fixture()
def faulty_server(models, tmp_path):
    # One input per batch, so which requests share a batch with a fault is not left to chance.
    reader = {"model_name": str(models["tiny-roberta"]), "device": "cpu", "consumer_group": "primary",
              "dtype": "float32", "max_batch_size": 1}
    running = start_server(tmp_path, readers={"r1": reader, "r2": dict(reader)}, launcher=FAULTY,
                           env={"FAULT_SLEEP_SECONDS": "2"})
    yield running
    running.stop()


def assert_correct(models, response: httpx.Response, text: str) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["result"][0] == pytest.approx(reference_logits(models["tiny-roberta"], text), abs=1e-4)


def test_a_raising_forward_pass_fails_only_its_batch(faulty_server, models):
    with ThreadPoolExecutor(9) as pool:
        bad = pool.submit(classify, faulty_server, "this one says xyzzyraise")
        good = [pool.submit(classify, faulty_server, text) for text in GOOD]
        bad_response = bad.result()
        good_responses = [future.result() for future in good]

    assert bad_response.status_code == 500
    error = bad_response.json()["error"]
    assert error["type"] == "internal_error"
    assert "Traceback" not in bad_response.text and "fault injected" not in bad_response.text
    assert error["request_id"] == bad_response.headers["x-request-id"]
    assert error["request_id"] in faulty_server.log()
    for text, response in zip(GOOD, good_responses, strict=True):
        assert_correct(models, response, text)

    readers = readers_by_id(faulty_server)
    assert {reader["status"] for reader in readers.values()} == {"ready"}
    assert sum(failed_batches(faulty_server, reader_id) for reader_id in readers) == 1
    # Both readers keep serving after the failure.
    for text in GOOD:
        assert_correct(models, classify(faulty_server, text), text)


def test_a_dead_reader_is_reported_and_its_group_keeps_serving(faulty_server, models):
    # The doomed batch is in the reader's hands while the good requests arrive: the other reader takes them.
    with ThreadPoolExecutor(9) as pool:
        doomed = pool.submit(classify, faulty_server, "xyzzysleep then xyzzykill")
        time.sleep(0.3)
        good = [pool.submit(classify, faulty_server, text) for text in GOOD]
        doomed_response = doomed.result()
        good_responses = [future.result() for future in good]

    assert doomed_response.status_code == 503, doomed_response.text
    assert doomed_response.json()["error"]["type"] == "reader_unavailable"
    for text, response in zip(GOOD, good_responses, strict=True):
        assert_correct(models, response, text)

    readers = readers_by_id(faulty_server)
    dead = [rid for rid, reader in readers.items() if reader["status"] == "dead"]
    assert len(dead) == 1, readers
    assert "ReaderKilled" in readers[dead[0]]["error"]
    status = httpx.get(faulty_server.url + "/status").json()
    assert status["other_readers"][dead[0]]["status"] == "dead"
    assert set(status["live_readers"]) == set(readers) - set(dead)
    assert_correct(models, classify(faulty_server, GOOD[0]), GOOD[0])

    # Kill the last reader while work waits behind it: that work fails with 503, none of it hangs.
    with ThreadPoolExecutor(5) as pool:
        doomed = pool.submit(classify, faulty_server, "xyzzysleep then xyzzykill", 30)
        time.sleep(0.3)
        queued = [pool.submit(classify, faulty_server, text, 30) for text in GOOD[:4]]
        responses = [doomed.result(), *(future.result() for future in queued)]
    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["type"] in ("reader_unavailable", "not_ready")
    assert {reader["status"] for reader in readers_by_id(faulty_server).values()} == {"dead"}
    response = classify(faulty_server, GOOD[0], 30)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "not_ready"
    assert faulty_server.process.poll() is None
