"""Consumer groups and readers: the management API, several readers per group, readers added and removed live."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from takeoff_client import TakeoffClient

from tests.reference import reference_logits
from tests.server import start_server

PAIRS = [["what is the capital of france", "Paris is the capital and largest city of France."],
         ["what is the capital of france", "The Nile is a river in Africa."]] * 4


@pytest.fixture()
def two_reader_server(models, tmp_path):
    folder = str(models["minilm-reranker"])
    readers = {
        "r1": {"model_name": folder, "device": "cpu", "consumer_group": "rerank", "dtype": "float32",
               "max_batch_size": 8},
        "r2": {"model_name": folder, "device": "cpu", "consumer_group": "rerank", "dtype": "float32",
               "max_batch_size": 8},
    }
    running = start_server(tmp_path, readers=readers)
    yield running
    running.stop()


class Traffic:
    """Closed-loop clients sending the same pairs until stopped; records every outcome."""

    def __init__(self, url: str, group: str, expected: list[list[float]], clients: int = 4) -> None:
        self.url, self.group, self.expected = url, group, expected
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _loop(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                response = client.post(self.url + "/classify", json={"text": PAIRS, "consumer_group": self.group})
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
                    continue
                rows = response.json()["result"]
                if any(abs(a[0] - b[0]) > 1e-4 for a, b in zip(rows, self.expected, strict=True)):
                    self.failures.append(f"wrong results {rows}")
                else:
                    self.ok += 1


def expected_rows(models) -> list[list[float]]:
    return [reference_logits(models["minilm-reranker"], pair) for pair in PAIRS]


def batches(server, reader_id: str) -> int:
    return httpx.get(server.management_url + "/reader_groups").json()["rerank"] and next(
        r["batches_run"] for r in httpx.get(server.management_url + "/reader_groups").json()["rerank"]
        if r["reader_id"] == reader_id
    )


def test_two_readers_of_one_group_both_serve_under_load(two_reader_server, models):
    with Traffic(two_reader_server.url, "rerank", expected_rows(models)) as traffic:
        time.sleep(6)
    assert not traffic.failures
    assert traffic.ok > 0
    assert batches(two_reader_server, "r1") > 0
    assert batches(two_reader_server, "r2") > 0
    metrics = httpx.get(two_reader_server.management_url + "/metrics").text
    for reader_id in ("r1", "r2"):
        line = next(row for row in metrics.splitlines()
                    if row.startswith("assay_reader_batches_total") and f'reader_id="{reader_id}"' in row)
        assert float(line.split()[-1]) > 0


def test_reader_deleted_under_traffic_loses_no_request(two_reader_server, models):
    client = TakeoffClient(base_url="http://127.0.0.1", port=two_reader_server.port,
                           mgmt_port=two_reader_server.management_port)
    with Traffic(two_reader_server.url, "rerank", expected_rows(models)) as traffic:
        time.sleep(2)
        client.delete_reader("r1")
        time.sleep(3)
    assert not traffic.failures
    groups = client.list_all_readers()
    assert [r["reader_id"] for r in groups["rerank"]] == ["r2"]
    assert "r1" not in client.get_status()["live_readers"]


def test_reader_added_under_traffic_serves_once_loaded(two_reader_server, models):
    client = TakeoffClient(base_url="http://127.0.0.1", port=two_reader_server.port,
                           mgmt_port=two_reader_server.management_port)
    with Traffic(two_reader_server.url, "rerank", expected_rows(models)) as traffic:
        created = client.create_reader({"model_name": str(models["minilm-reranker"]), "device": "cpu",
                                        "consumer_group": "rerank", "max_batch_size": 4})
        new_id = created["reader_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and new_id not in client.get_status()["live_readers"]:
            time.sleep(0.2)
        assert new_id in client.get_status()["live_readers"]
        time.sleep(4)
    assert not traffic.failures
    assert batches(two_reader_server, new_id) > 0
    config = client.get_reader_config(new_id)
    assert config["max_batch_size"] == 4 and config["consumer_group"] == "rerank"
    # takeoff-client cannot send a dtype: the new reader joins the group's float32, so scores agree.
    assert config["dtype"] == "float32"


def test_takeoff_client_management_calls(two_reader_server, models):
    client = TakeoffClient(base_url="http://127.0.0.1", port=two_reader_server.port,
                           mgmt_port=two_reader_server.management_port)
    groups = client.get_readers()
    assert sorted(r["reader_id"] for r in groups["rerank"]) == ["r1", "r2"]
    for reader in groups["rerank"]:
        assert {"reader_id", "model_name", "device", "status"} <= set(reader)
    assert client.get_reader_config("r1")["model_name"] == str(models["minilm-reranker"])
    assert set(client.get_status()["live_readers"]) == {"r1", "r2"}
    # The client sends consumer_group "" when none is given: it means primary.
    created = client.create_reader({"model_name": str(models["minilm-classifier"]), "device": "cpu"})
    assert created["consumer_group"] == "primary"
    client.delete_reader(created["reader_id"])
    assert "primary" not in client.list_all_readers()


def test_management_errors(two_reader_server, models):
    url = two_reader_server.management_url
    assert httpx.delete(url + "/reader/nope").status_code == 404
    assert httpx.get(url + "/config/nope").status_code == 404
    response = httpx.post(url + "/reader", json={"model_name": "/m", "device": "cpu", "max_batch_sise": 2})
    assert response.status_code == 422 and "max_batch_sise" in response.json()["error"]["message"]
    response = httpx.post(url + "/reader", json={"model_name": "/m", "device": "cpu", "consumer_group": "rerank"})
    assert response.status_code == 409  # a group serves one model
    response = httpx.post(url + "/reader", json={"model_name": "/m", "device": "cpu", "consumer_group": "rerank",
                                                 "reader_id": "r1"})
    assert response.status_code == 409
    response = httpx.post(url + "/reader", json={"model_name": str(models["minilm-reranker"]), "device": "cpu",
                                                 "consumer_group": "rerank", "dtype": "bfloat16"})
    assert response.status_code == 409 and "float32" in response.json()["error"]["message"]


def test_a_reader_that_fails_to_load_never_serves(two_reader_server, tmp_path):
    url = two_reader_server.management_url
    response = httpx.post(url + "/reader", json={"model_name": str(tmp_path / "nothing"), "device": "cpu",
                                                 "consumer_group": "broken"})
    assert response.status_code == 201
    reader_id = response.json()["reader_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reader = httpx.get(url + "/reader_groups").json()["broken"][0]
        if reader["status"] != "loading":
            break
        time.sleep(0.1)
    assert reader["status"] == "failed" and "nothing" in reader["error"]
    assert f"reader {reader_id} failed to load" in two_reader_server.log()
    response = httpx.post(two_reader_server.url + "/classify", json={"text": "x", "consumer_group": "broken"})
    assert response.status_code == 503


def test_group_still_loading_is_503_with_retry_after(models, tmp_path):
    running = start_server(tmp_path, args=["--model", str(models["minilm-classifier"])], wait_ready=False)
    try:
        deadline = time.monotonic() + 60
        seen = set()
        while time.monotonic() < deadline:
            try:
                response = httpx.post(running.url + "/classify", json={"text": "x"}, timeout=5)
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            seen.add(response.status_code)
            if response.status_code == 503:
                assert response.headers["retry-after"]
            if response.status_code == 200:
                break
        assert 200 in seen
    finally:
        running.stop()
