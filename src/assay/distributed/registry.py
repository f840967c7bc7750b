"""RayRegistry: consumer groups as Ray Serve deployments, readers as their replicas.

Each consumer group is a Serve application (``assay-group-...``) with one deployment whose replicas run
``GroupReplica``. Reader ids are this registry's bookkeeping: a group runs one replica per reader id (or, when
autoscaled, as many as Serve decides between the manifest's bounds), and each reader id is shown with the
replica that fills it. When a reader is deleted Serve picks which replica stops; the others keep serving under
the remaining ids. What replicas exist, where and in what state comes from the Serve controller's own view.

A request goes to the group's deployment handle; Serve picks a replica, whose queue batches it with the other
requests it holds. A request in flight on a replica that dies is retried once on another replica of the group;
if that fails too, it gets 503 ``reader_unavailable``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve._private.common import DeploymentID
from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

from assay.config import GroupAutoscaling, ReaderConfig, ServerConfig, new_reader_id
from assay.distributed.replica import GroupReplica, ReplicaReply
from assay.engine.group import GroupSummary, Scored
from assay.engine.work import DeadlineExceeded, ReaderGone
from assay.errors import AssayError, Conflict, NotFound, NotReady
from assay.models.adapter import Capabilities, Inputs

log = logging.getLogger(__name__)

#: The Serve application holding the ingress (the HTTP apps).
INGRESS_APP = "assay"
#: Prefix of each consumer group's Serve application.
GROUP_APP_PREFIX = "assay-group-"
#: The deployment inside a group's application: its replicas are the group's readers.
GROUP_DEPLOYMENT = "readers"
#: How often the registry reads the replicas' states from the Serve controller (seconds).
REFRESH_SECONDS = 1.0
#: Longest a request without X-Request-Timeout waits for a replica's answer: nothing waits forever.
MAX_WAIT_SECONDS = 600.0
#: Reader settings every replica of a group shares (they come from the deployment's one constructor call).
BATCHING_FIELDS = ("max_batch_size", "batch_duration_millis", "max_sequence_length", "max_batch_tokens")

#: Serve replica states as reader statuses.
_REPLICA_STATUS = {
    "STARTING": "loading", "UPDATING": "loading", "RECOVERING": "loading", "PENDING_MIGRATION": "ready",
    "RUNNING": "ready", "STOPPING": "stopping", "STOPPED": "stopped",
}


def group_app_name(group: str) -> str:
    """A Serve application name for a consumer group: readable, and unique whatever characters the group has."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", group)[:40]
    return f"{GROUP_APP_PREFIX}{readable}-{hashlib.sha1(group.encode()).hexdigest()[:8]}"


@dataclass
class ReplicaView:
    """One replica as the Serve controller reports it."""

    #: Serve's replica id.
    replica_id: str
    #: Serve's state: STARTING, RUNNING, STOPPING...
    state: str
    #: The Ray node it runs on.
    node_id: str | None
    #: That node's address.
    node_ip: str | None
    #: Its worker process.
    pid: int | None
    #: When it started (seconds since the epoch): replicas fill free reader ids oldest first.
    start_time_s: float


@dataclass
class ReplicaCounters:
    """What the ingress has seen a replica serve."""

    #: Requests it answered.
    requests: int = 0
    #: Its reader's batches run, as of its latest answer.
    batches_run: int = 0
    #: Its reader's inputs run, as of its latest answer.
    items_run: int = 0


@dataclass
class RayGroup:
    """One consumer group: a Serve deployment, the reader ids it stands for, and its replicas' last known state."""

    #: The group's name.
    name: str
    #: The settings every replica runs (the first reader's), reader id left out.
    config: ReaderConfig
    #: Reader ids, in the order they were added.
    reader_ids: list[str]
    #: Replica bounds when Serve autoscales the group, else None (one replica per reader id).
    autoscaling: GroupAutoscaling | None
    #: The Serve application's name.
    app: str
    #: The deployment's handle; None until deployed.
    handle: Any = None
    #: The deployment's replicas, as of the last refresh.
    replicas: list[ReplicaView] = field(default_factory=list)
    #: The deployment's status (UPDATING, HEALTHY, DEPLOY_FAILED...).
    deploy_status: str = "UPDATING"
    #: Serve's message for that status (a constructor's error when the model failed to load).
    message: str = ""
    #: Reader id -> replica id filling it.
    assignment: dict[str, str] = field(default_factory=dict)
    #: Replica id -> what it has served.
    counters: dict[str, ReplicaCounters] = field(default_factory=dict)
    #: The loaded model's summary, asked of a replica once one is running.
    summary: GroupSummary | None = None

    def replica(self, replica_id: str | None) -> ReplicaView | None:
        return next((r for r in self.replicas if r.replica_id == replica_id), None)

    def running(self) -> list[ReplicaView]:
        return [r for r in self.replicas if _REPLICA_STATUS.get(r.state) == "ready"]

    async def score(self, inputs: Inputs, *, timeout: float | None = None) -> Scored:
        """The group's results, from whichever replica Serve picks; retried once if that replica dies."""
        self._check_serving()
        wait = timeout if timeout is not None else MAX_WAIT_SECONDS
        deadline = time.monotonic() + wait
        for attempt in (1, 2):
            remaining = max(0.0, deadline - time.monotonic())
            response = self.handle.score.remote(inputs, remaining if timeout is not None else None)
            try:
                # The replica enforces the deadline itself; the margin covers the trip back.
                reply: ReplicaReply = await asyncio.wait_for(_awaited(response), remaining + 5.0)
            except asyncio.CancelledError:
                response.cancel()  # the client went away: the replica drops the queued work
                raise
            except TimeoutError:
                response.cancel()
                raise DeadlineExceeded(
                    f"consumer group '{self.name}' did not answer within {wait:.0f}s"
                ) from None
            except (RayActorError, ActorUnavailableError) as exc:
                if attempt == 1:
                    log.warning("group '%s': the replica running a request died (%s); retrying it once on another "
                                "replica", self.name, type(exc).__name__)
                    continue
                raise ReaderGone(
                    f"consumer group '{self.name}': the replica running this request died, and so did the one it "
                    "was retried on; Ray restarts replicas, retry shortly"
                ) from None
            except RayTaskError as exc:
                if isinstance(exc.cause, AssayError):
                    raise exc.cause from None
                raise
            self._record(reply)
            return reply.scored
        raise AssertionError("unreachable")

    def _check_serving(self) -> None:
        """Refuse at once when no replica serves: Serve would hold the request until one does."""
        if self.running():
            return
        if self.deploy_status == "DEPLOY_FAILED":
            raise NotReady(f"consumer group '{self.name}' has no reader that can serve: {self.message}")
        raise NotReady(
            f"consumer group '{self.name}' has no running replica yet (its model is loading); retry shortly",
            headers={"Retry-After": "5"},
        )

    def _record(self, reply: ReplicaReply) -> None:
        counters = self.counters.setdefault(reply.replica_id, ReplicaCounters())
        counters.requests += 1
        counters.batches_run = max(counters.batches_run, reply.batches_run)
        counters.items_run = max(counters.items_run, reply.items_run)

    def assign(self) -> None:
        """Fill reader ids with replicas: a reader keeps its replica while it serves; free replicas, oldest
        first, fill the reader ids that have none."""
        serving = {r.replica_id for r in self.replicas if r.state not in ("STOPPING", "STOPPED")}
        self.assignment = {
            reader_id: replica_id for reader_id, replica_id in self.assignment.items()
            if reader_id in self.reader_ids and replica_id in serving
        }
        taken = set(self.assignment.values())
        free = [r.replica_id for r in sorted(self.replicas, key=lambda r: (r.start_time_s, r.replica_id))
                if r.replica_id in serving and r.replica_id not in taken]
        for reader_id in self.reader_ids:
            if reader_id not in self.assignment and free:
                self.assignment[reader_id] = free.pop(0)

    def readers(self) -> list[tuple[str, ReplicaView | None]]:
        """(reader id, its replica) for every reader id; an autoscaled group's extra replicas are listed under
        their replica id."""
        listed = [(reader_id, self.replica(self.assignment.get(reader_id))) for reader_id in self.reader_ids]
        taken = set(self.assignment.values())
        extra = [(r.replica_id, r) for r in self.replicas
                 if r.replica_id not in taken and r.state not in ("STOPPING", "STOPPED")]
        return listed + (extra if self.autoscaling is not None else [])

    def describe_reader(self, reader_id: str, replica: ReplicaView | None) -> dict[str, Any]:
        """A reader as /reader_groups lists it, with the replica behind it."""
        if replica is not None:
            status = _REPLICA_STATUS.get(replica.state, "loading")
        else:
            status = "failed" if self.deploy_status == "DEPLOY_FAILED" else "loading"
        counters = self.counters.get(replica.replica_id) if replica else None
        summary = self.summary
        return {
            "reader_id": reader_id,
            "model_name": self.config.model_name,
            "device": self.config.device,
            "consumer_group": self.name,
            "status": status,
            "task": summary.task if summary else None,
            "dtype": summary.dtype if summary else None,
            "max_batch_size": self.config.max_batch_size,
            "batch_duration_millis": self.config.batch_duration_millis,
            "max_sequence_length": summary.max_sequence_length if summary else self.config.max_sequence_length,
            "batches_run": counters.batches_run if counters else 0,
            "items_run": counters.items_run if counters else 0,
            "requests_served": counters.requests if counters else 0,
            "error": self.message if status == "failed" else None,
            "replica_id": replica.replica_id if replica else None,
            "node_id": replica.node_id if replica else None,
            "node_ip": replica.node_ip if replica else None,
            "pid": replica.pid if replica else None,
        }

    def group_summary(self) -> GroupSummary:
        readers = [self.describe_reader(rid, replica) for rid, replica in self.readers()]
        ready = sum(r["status"] == "ready" for r in readers)
        order = ("ready", "loading", "stopping", "failed", "stopped")
        status = min((r["status"] for r in readers), key=order.index, default="loading")
        summary = self.summary
        return GroupSummary(
            name=self.name,
            model_name=self.config.model_name,
            task=summary.task if summary else None,
            dtype=summary.dtype if summary else self.config.dtype,
            status=status,
            readers=len(readers),
            ready_readers=ready,
            max_sequence_length=summary.max_sequence_length if summary else self.config.max_sequence_length,
            error=None if ready else (self.message or None),
            capabilities=summary.capabilities if summary else Capabilities(),
        )


def _name(state: Any) -> str:
    """A Serve status or state as its name: the controller's details hold enums."""
    return str(getattr(state, "value", state))


async def _awaited(response: Any) -> Any:
    return await response


class RayRegistry:
    """The Registry the HTTP apps use with --ray: groups are Serve deployments, readers their replicas."""

    def __init__(self, server: ServerConfig) -> None:
        self.server = server
        self.groups: dict[str, RayGroup] = {}
        self._controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        self._changing = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------------------------------------------

    async def start(self, readers: list[ReaderConfig]) -> None:
        """Deploy the configured readers' groups (their models load in the background) and start watching them."""
        for config in readers:
            self._plan(config)
        for group in self.groups.values():
            await self._deploy(group)
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever())

    def close(self) -> None:
        """Stop watching; the group deployments are deleted by ``assay serve --ray`` as it exits."""
        if self._refresher is not None:
            self._refresher.cancel()

    # -- requests ----------------------------------------------------------------------------------------------

    def group(self, name: str) -> RayGroup:
        group = self.groups.get(name)
        if group is None:
            known = ", ".join(sorted(self.groups)) or "none"
            raise NotFound(f"consumer group '{name}' does not exist; existing groups: {known}")
        return group

    # -- management --------------------------------------------------------------------------------------------

    async def create_reader(self, config: ReaderConfig) -> dict[str, Any]:
        """A new group's deployment, or one more replica of the reader's group."""
        async with self._changing:
            group, reader_id, new_group = self._plan(config)
            try:
                if new_group:
                    await self._deploy(group)
                else:
                    await self._scale(group)
            except BaseException:
                group.reader_ids.remove(reader_id)
                if new_group:
                    self.groups.pop(group.name, None)
                raise
            return group.describe_reader(reader_id, None)

    async def delete_reader(self, reader_id: str) -> dict[str, Any]:
        """One replica fewer (Serve lets it finish its requests in flight); the group's last reader deletes the
        deployment. Answers once the replica has stopped."""
        async with self._changing:
            group = self._group_of(reader_id)
            if group.autoscaling is not None:
                raise Conflict(self._autoscaled(group))
            group.reader_ids.remove(reader_id)
            group.assignment.pop(reader_id, None)
            loop = asyncio.get_running_loop()
            if not group.reader_ids:
                self.groups.pop(group.name, None)
                await loop.run_in_executor(None, serve.delete, group.app)
            else:
                await self._scale(group)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    await self.refresh()
                    if len([r for r in group.replicas if r.state != "STOPPED"]) <= len(group.reader_ids):
                        break
                    await asyncio.sleep(0.2)
            return {"reader_id": reader_id, "status": "stopped"}

    def _plan(self, config: ReaderConfig) -> tuple[RayGroup, str, bool]:
        """Book a reader into its group (a new group when none): (group, reader id, whether the group is new)."""
        reader_id = config.reader_id or new_reader_id()
        if any(reader_id in group.reader_ids for group in self.groups.values()):
            raise Conflict(f"a reader with id '{reader_id}' already exists")
        group = self.groups.get(config.consumer_group)
        if group is None:
            group = RayGroup(
                name=config.consumer_group,
                config=config.model_copy(update={"reader_id": None}),
                reader_ids=[reader_id],
                autoscaling=self.server.ray_autoscaling.get(config.consumer_group),
                app=group_app_name(config.consumer_group),
            )
            self.groups[group.name] = group
            return group, reader_id, True
        self._check_joins(group, config)
        group.reader_ids.append(reader_id)
        return group, reader_id, False

    def _check_joins(self, group: RayGroup, config: ReaderConfig) -> None:
        """A group's replicas come from one constructor: one model, device, precision and batching settings."""
        if group.autoscaling is not None:
            raise Conflict(self._autoscaled(group))
        if config.model_name != group.config.model_name:
            raise Conflict(
                f"consumer group '{group.name}' serves model '{group.config.model_name}'; "
                f"a reader of '{config.model_name}' belongs in another group"
            )
        if config.device != group.config.device:
            raise Conflict(f"consumer group '{group.name}' runs on {group.config.device}; use another group")
        group_dtype = group.summary.dtype if group.summary else group.config.dtype
        if config.dtype not in ("auto", group.config.dtype, group_dtype):
            raise Conflict(
                f"consumer group '{group.name}' runs in {group_dtype}; a {config.dtype} reader would give "
                "different scores for the same input: leave dtype out (auto) or use another group"
            )
        differing = [name for name in BATCHING_FIELDS
                     if name in config.model_fields_set and getattr(config, name) != getattr(group.config, name)]
        if differing:
            settings = ", ".join(f"{name}={getattr(group.config, name)}" for name in differing)
            raise Conflict(
                f"consumer group '{group.name}' runs its replicas with {settings}: on Ray a group's readers are "
                "replicas of one deployment and share its batching settings; leave them out or use another group"
            )

    @staticmethod
    def _autoscaled(group: RayGroup) -> str:
        bounds = group.autoscaling
        assert bounds is not None
        return (f"consumer group '{group.name}' autoscales between {bounds.min_replicas} and {bounds.max_replicas} "
                "replicas (server_config ray_autoscaling): Ray Serve adds and removes its readers")

    def _group_of(self, reader_id: str) -> RayGroup:
        for group in self.groups.values():
            if reader_id in group.reader_ids:
                return group
        raise NotFound(f"no reader with id '{reader_id}'; readers: {sorted(self._reader_ids()) or 'none'}")

    def _reader_ids(self) -> list[str]:
        return [reader_id for group in self.groups.values() for reader_id in group.reader_ids]

    async def _deploy(self, group: RayGroup) -> None:
        """Create the group's Serve application; it returns before the replicas have loaded their models."""
        config = group.config
        options: dict[str, Any] = {
            "name": GROUP_DEPLOYMENT,
            # Requests must reach the replica's own queue to be batched there: Serve holds back none of them.
            "max_ongoing_requests": self.server.max_queued_requests,
            "ray_actor_options": {"num_cpus": self.server.ray_replica_cpus,
                                  "num_gpus": 1 if config.device == "cuda" else 0},
            "health_check_period_s": 2.0,
            "graceful_shutdown_timeout_s": 60.0,
        }
        if group.autoscaling is not None:
            options["autoscaling_config"] = {
                "min_replicas": group.autoscaling.min_replicas,
                "max_replicas": group.autoscaling.max_replicas,
                "target_ongoing_requests": group.autoscaling.target_queue_length,
            }
        else:
            options["num_replicas"] = len(group.reader_ids)
        app = serve.deployment(GroupReplica).options(**options).bind(
            config.model_dump(exclude={"reader_id"}), self.server.max_queued_requests
        )
        target = serve.RunTarget(target=app, name=group.app, route_prefix=None,
                                 external_scaler_enabled=group.autoscaling is None)

        def deploy() -> Any:
            serve.run_many([target], wait_for_applications_running=False)
            return serve.get_deployment_handle(GROUP_DEPLOYMENT, app_name=group.app)

        group.handle = await asyncio.get_running_loop().run_in_executor(None, deploy)
        log.info("consumer group '%s': deployed %s with %d replica(s)", group.name, group.app, len(group.reader_ids))

    async def _scale(self, group: RayGroup) -> None:
        """One replica per reader id, through Serve's external scaler."""
        target = len(group.reader_ids)
        await self._controller.update_deployment_replicas.remote(DeploymentID(GROUP_DEPLOYMENT, group.app), target)
        log.info("consumer group '%s': %d replica(s)", group.name, target)

    # -- reporting ---------------------------------------------------------------------------------------------

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception:  # the controller restarting, say: keep the last view and try again
                log.exception("could not read the replicas' states from the Serve controller")

    async def refresh(self) -> None:
        """Read every group's replicas from the Serve controller; ask a running replica for its model's summary."""
        details = await self._controller.get_serve_instance_details.remote()
        applications = details.get("applications", {})
        for group in list(self.groups.values()):
            app = applications.get(group.app) or {}
            deployment = (app.get("deployments") or {}).get(GROUP_DEPLOYMENT)
            if deployment is None:
                group.replicas = []
                group.deploy_status = "DEPLOY_FAILED" if _name(app.get("status")) == "DEPLOY_FAILED" else "UPDATING"
                group.message = app.get("message", "")
            else:
                group.deploy_status = _name(deployment.get("status", "UPDATING"))
                group.message = deployment.get("message", "") or app.get("message", "")
                group.replicas = [
                    ReplicaView(
                        replica_id=r["replica_id"], state=_name(r["state"]), node_id=r.get("node_id"),
                        node_ip=r.get("node_ip"), pid=r.get("pid"), start_time_s=r.get("start_time_s", 0.0),
                    )
                    for r in deployment.get("replicas", [])
                ]
            group.assign()
            if group.summary is None and group.running() and group.handle is not None:
                try:
                    group.summary = await asyncio.wait_for(_awaited(group.handle.summary.remote()), 10)
                except Exception as exc:  # a replica still settling: ask again on the next refresh
                    log.debug("group '%s': no summary yet (%s)", group.name, exc)

    def reader_config(self, reader_id: str) -> dict[str, Any]:
        group = self._group_of(reader_id)
        dtype = group.summary.dtype if group.summary else group.config.dtype
        return group.config.model_copy(update={"reader_id": reader_id, "dtype": dtype}).model_dump()

    def reader_groups(self) -> dict[str, list[dict[str, Any]]]:
        return {
            name: [group.describe_reader(rid, replica) for rid, replica in group.readers()]
            for name, group in sorted(self.groups.items())
        }

    def group_summaries(self) -> list[GroupSummary]:
        return [group.group_summary() for _, group in sorted(self.groups.items())]

    def status(self) -> dict[str, Any]:
        readers = [reader for group in self.groups.values()
                   for reader in (group.describe_reader(rid, replica) for rid, replica in group.readers())]
        return {
            "live_readers": {r["reader_id"]: r for r in readers if r["status"] == "ready"},
            "other_readers": {r["reader_id"]: r for r in readers if r["status"] != "ready"},
        }

    def serving(self) -> bool:
        return bool(self.groups) and all(group.running() for group in self.groups.values())
