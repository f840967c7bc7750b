"""A real two-node Ray cluster: a head and a worker node, each in its own network namespace, joined by a veth pair
(10.200.0.1 and 10.200.0.2: addresses that exist only inside these namespaces). ``assay serve --ray`` joins the
head; a group's two replicas land one on each node, and both serve.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.netns import NetworkNamespace, veth_pair
from tests.reference import reference_logits
from tests.server import RunningServer, start_server

HEAD_IP, WORKER_IP = "10.200.0.1", "10.200.0.2"
GCS_PORT = 6390
RAY = str(Path(sys.executable).with_name("ray"))
#: Ray's token authentication with a token of this run's own (nothing written to ~/.ray).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16)}
TEXT = "a perfectly ordinary sentence"


class RayNode:
    """``ray start --block`` in a namespace: the process owns the node's Ray processes and stops them on SIGTERM."""

    def __init__(self, namespace: NetworkNamespace, args: list[str], log: Path) -> None:
        self.log = log
        env = {**os.environ, **RAY_ENV}
        self.process = subprocess.Popen(namespace.command(RAY, "start", "--block", "--disable-usage-stats", *args),
                                        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[NetworkNamespace, NetworkNamespace]]:
    tag = os.getpid()
    head = NetworkNamespace(f"assay-head-{tag}")
    worker = NetworkNamespace(f"assay-worker-{tag}")
    nodes: list[RayNode] = []
    logs = tmp_path_factory.mktemp("ray-nodes")
    try:
        veth_pair(head, f"{HEAD_IP}/24", worker, f"{WORKER_IP}/24", prefix=f"as{tag % 100000}")
        nodes.append(RayNode(head, ["--head", "--node-ip-address", HEAD_IP, "--port", str(GCS_PORT), "--num-cpus",
                                    "1", "--include-dashboard", "false"], logs / "head.log"))
        time.sleep(3)
        nodes.append(RayNode(worker, ["--address", f"{HEAD_IP}:{GCS_PORT}", "--node-ip-address", WORKER_IP,
                                      "--num-cpus", "1"], logs / "worker.log"))
        for node in nodes:
            time.sleep(1)
            assert node.process.poll() is None, node.log.read_text()
        yield head, worker
    finally:
        for node in reversed(nodes):
            node.stop()
        head.delete()
        worker.delete()


@pytest.fixture(scope="module")
def server(cluster, models, tmp_path_factory) -> Iterator[RunningServer]:
    head, _ = cluster
    reader = {"model_name": str(models["tiny-roberta"]), "device": "cpu", "consumer_group": "spread",
              "dtype": "float32"}
    with head.entered():
        running = start_server(tmp_path_factory.mktemp("ray-cluster"), readers={"a": reader, "b": dict(reader)},
                               args=["--ray", f"{HEAD_IP}:{GCS_PORT}"], env=RAY_ENV,
                               server_config={"ray_replica_cpus": 1}, timeout=300)
        try:
            yield running
        finally:
            assert running.stop(timeout=120) == 0, running.log()[-5000:]


def test_the_namespaces_hold_only_their_own_addresses(cluster):
    head, worker = cluster
    assert sorted(head.addresses()) == sorted(["127.0.0.1", HEAD_IP])
    assert sorted(worker.addresses()) == sorted(["127.0.0.1", WORKER_IP])


def test_a_group_serves_from_a_replica_on_each_node(cluster, server, models):
    head, _ = cluster
    expected = reference_logits(models["tiny-roberta"], TEXT)
    with head.entered():
        listing = wait_for(
            lambda: (group := httpx.get(server.management_url + "/reader_groups").json()["spread"])
            and {r["status"] for r in group} == {"ready"} and group,
            timeout=120, what="both replicas ready",
        )
        assert sorted(r["reader_id"] for r in listing) == ["a", "b"]
        assert {r["node_ip"] for r in listing} == {HEAD_IP, WORKER_IP}
        assert len({r["node_id"] for r in listing}) == 2

        def classify(_: int) -> list[float]:
            response = httpx.post(server.url + "/classify", json={"text": TEXT, "consumer_group": "spread"},
                                  timeout=60)
            assert response.status_code == 200, response.text
            return response.json()["result"]

        def both_served() -> bool:
            with ThreadPoolExecutor(8) as pool:
                for row in pool.map(classify, range(16)):
                    assert row == pytest.approx(expected, abs=1e-4)
            group = httpx.get(server.management_url + "/reader_groups").json()["spread"]
            return all(r["requests_served"] > 0 for r in group)

        wait_for(both_served, timeout=60, what="requests served by both replicas")
        group = httpx.get(server.management_url + "/reader_groups").json()["spread"]
        assert {r["node_ip"] for r in group if r["requests_served"] > 0} == {HEAD_IP, WORKER_IP}
