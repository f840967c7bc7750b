"""``assay serve --ray``: join (or start) a Ray cluster, deploy the ingress on this node, and on SIGTERM or SIGINT
drain it and delete Assay's deployments.

The ingress is pinned to the node this process runs on, so the configured ports open here, as they would on a
single machine. Without an address a fresh local Ray instance is started (never one found running).
"""

from __future__ import annotations

import logging
import signal
import threading

import ray
from ray import serve

from assay.config import AssayConfig
from assay.distributed.ingress import Ingress
from assay.distributed.registry import GROUP_APP_PREFIX, INGRESS_APP

log = logging.getLogger(__name__)

#: The Ray namespace of Assay's actors (its Serve applications live in Serve's own).
NAMESPACE = "assay"
#: The ingress deployment's name.
INGRESS_DEPLOYMENT = "ingress"


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` (as ``ray start`` prints it, or ``auto``), or start a local instance."""
    if address:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=True)
    else:
        # A fresh instance on this machine, never one found running (address="local").
        ray.init(address="local", namespace=NAMESPACE, include_dashboard=False)
    log.info("joined Ray cluster: %s", ray.cluster_resources())


def serve_on_ray(config: AssayConfig, *, log_level: str = "info") -> int:
    """Serve until a signal asks to stop, then drain and remove Assay's deployments."""
    connect(config.server.ray_address)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, so that ours are the handlers
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(proxy_location="Disabled")
        node = ray.get_runtime_context().get_node_id()
        node_ip = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node)
        ingress = serve.deployment(Ingress).options(
            name=INGRESS_DEPLOYMENT,
            num_replicas=1,
            max_ongoing_requests=100,
            # On this node: the ports open where the operator started the server.
            ray_actor_options={"num_cpus": 0, "resources": {f"node:{node_ip}": 0.001}},
            health_check_period_s=5.0,
        ).bind(config.model_dump(mode="json"), log_level)
        handle = serve.run(ingress, name=INGRESS_APP, route_prefix=None)
        server = config.server
        log.info(
            "Assay on Ray (ingress on node %s): inference http://%s:%d, management http://%s:%d, "
            "OpenAI-compatible http://%s:%d", node, server.host, server.port, server.management_host,
            server.management_port, server.host, server.openai_port,
        )
        stop.wait()
        log.info("shutting down: draining the ingress")
        try:
            handle.drain.remote().result(timeout_s=server.drain_timeout_seconds + 30)
        except Exception:
            log.exception("the ingress did not drain")
    finally:
        remove_deployments()
        if not config.server.ray_address:
            serve.shutdown()
        ray.shutdown()
    log.info("stopped")
    return 0


def remove_deployments() -> None:
    """Delete the ingress and every consumer group's application (on a shared cluster, only Assay's)."""
    try:
        names = [name for name in serve.status().applications
                 if name == INGRESS_APP or name.startswith(GROUP_APP_PREFIX)]
    except Exception:
        log.exception("could not list Serve applications")
        return
    for name in names:
        try:
            serve.delete(name)
        except Exception:
            log.exception("could not delete Serve application %s", name)
