"""RayRegistry's bookkeeping without a cluster: which replica fills which reader id, and what a reader reports."""

from __future__ import annotations

from assay.config import ReaderConfig
from assay.distributed.registry import RayGroup, ReplicaView, group_app_name


def replica(replica_id: str, state: str = "RUNNING", started: float = 0.0) -> ReplicaView:
    return ReplicaView(replica_id=replica_id, state=state, node_id="n", node_ip="127.0.0.1", pid=1,
                       start_time_s=started)


def group(*reader_ids: str) -> RayGroup:
    return RayGroup(name="g", config=ReaderConfig(model_name="/m"), reader_ids=list(reader_ids), autoscaling=None,
                    app=group_app_name("g"))


def test_readers_keep_their_replica_and_free_replicas_fill_the_others_oldest_first():
    g = group("r1", "r2")
    g.replicas = [replica("new", started=2), replica("old", started=1)]
    g.assign()
    assert g.assignment == {"r1": "old", "r2": "new"}
    # Serve stopped r2's replica when r1 was deleted: r2 takes the one r1 left.
    g.reader_ids.remove("r1")
    g.replicas = [replica("old", started=1), replica("new", "STOPPING", started=2)]
    g.assign()
    assert g.assignment == {"r2": "old"}


def test_a_reader_without_a_replica_is_loading_or_failed_with_serves_message():
    g = group("r1")
    assert g.describe_reader("r1", None)["status"] == "loading"
    g.deploy_status, g.message = "DEPLOY_FAILED", "the replica constructor raised: no such folder"
    described = g.describe_reader("r1", None)
    assert described["status"] == "failed" and "no such folder" in described["error"]
    g.replicas = [replica("a", "STARTING")]
    g.assign()
    assert g.describe_reader("r1", g.replica(g.assignment["r1"]))["status"] == "loading"


def test_group_app_names_are_distinct_for_groups_that_read_alike():
    assert group_app_name("a/b") != group_app_name("a_b")
    assert group_app_name("rerank").startswith("assay-group-rerank-")
