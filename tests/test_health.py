"""Health and status as Takeoff's deployment probes read them."""

from __future__ import annotations

import time

import httpx

from tests.conftest import GROUPS
from tests.server import start_server


def test_healthz_and_status_when_ready(server):
    assert httpx.get(server.url + "/healthz").status_code == 200
    status = httpx.get(server.url + "/status").json()
    live = status["live_readers"]
    assert {reader["consumer_group"] for reader in live.values()} == set(GROUPS)
    for reader_id, reader in live.items():
        assert reader["reader_id"] == reader_id
        assert reader["status"] == "ready"


def test_healthz_is_503_before_the_model_is_ready_and_200_after(models, tmp_path):
    running = start_server(tmp_path, args=["--model", str(models["minilm-reranker"])], wait_ready=False)
    try:
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                code = httpx.get(running.url + "/healthz", timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            seen.append(code)
            if code == 200:
                break
            # Health checks are answered while the model loads (loading is off the event loop).
            response = httpx.post(running.url + "/classify", json={"text": [["a", "b"]]})
            assert response.status_code in (503, 200)  # the model may finish loading in between
            if response.status_code == 503:
                assert response.headers.get("retry-after")
                assert response.json()["error"]["type"] == "not_ready"
        assert seen[-1] == 200
        assert 503 in seen, "the model loaded before the first health check; cannot observe 503"
    finally:
        running.stop()


def test_a_model_that_cannot_load_is_reported(tmp_path):
    running = start_server(tmp_path, args=["--model", str(tmp_path / "missing-model")], wait_ready=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status = httpx.get(running.url + "/status", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            others = status["other_readers"]
            if others and next(iter(others.values()))["status"] == "failed":
                break
            time.sleep(0.1)
        reader = next(iter(status["other_readers"].values()))
        assert reader["status"] == "failed"
        assert "missing-model" in reader["error"]
        assert httpx.get(running.url + "/healthz").status_code == 503
        response = httpx.post(running.url + "/classify", json={"text": "x"})
        assert response.status_code == 503
        assert "failed" in response.json()["error"]["message"]
    finally:
        running.stop()
