"""The node agent: lifecycle, a pull loop per served runtime (and this node's routed subject)
within free slots, warm pools, heartbeat, rescue. One message's path: calls/runner.py."""

import asyncio
import logging
import secrets

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.kv import KeyValue

from common.jetstream import connect, drain_or_close, wait_layout
from common.kvwatch import follow
from common.lifecycle import Lifecycle, TaskSet
from common.logs import fields
from common.metrics import Metrics
from common.metrics_http import MetricsServer
from common.natsauth import agent_streams
from common.periodic import every
from common.pollone import poll_one
from common.pull import ConsumerGone, PullConsumer
from common.sealing import SecretsKey
from node_agent.calls.catalog import Catalog
from node_agent.calls.executor import Executor
from node_agent.calls.rescue import rescue_dead_nodes
from node_agent.calls.runner import CallRunner
from node_agent.calls.slots import Slots, take_slot
from node_agent.cancels import CancelWatch
from node_agent.containers.artifacts import ArtifactCache
from node_agent.containers.deps import DependencyImages
from node_agent.containers.docker import DockerEngine, Engine
from node_agent.containers.netseal import NetworkSeal
from node_agent.containers.prune import ImagePruner
from node_agent.jobs.worker import JobConfig, JobWorker
from node_agent.metrics import AgentCollector, AgentView, CallMetrics
from node_agent.nested.calls import NestedCalls
from node_agent.nodeid import claim_node_id
from node_agent.pools.config import pool_config
from node_agent.pools.deploys import Prefetch, follow_new_versions
from node_agent.pools.factory import WarmFactory
from node_agent.pools.keys import Layer, PoolKey
from node_agent.pools.pool import Pools
from node_agent.settings import AgentSettings
from node_agent.wire.socket import SocketDir
from schemas import (
    Layout,
    NodeState,
    encode,
)

log = logging.getLogger(__name__)

NODE_LOOP = "<node>"
# Calls one slot runs in a row through ack_next before it goes back to the slot semaphore
# (whose waiters, other subjects' pull loops and the job intake, are served in turn).
CHAIN_MAX = 16
# How long a finished call's ack waits for the next call of its subject: long enough for a
# client that calls again as soon as it has its answer (closed-loop clients then find the
# slot waiting; docs/benchmarks.md), short enough not to keep a slot from others.
CHAIN_WAIT_S = 0.05


class NodeAgent(Lifecycle):
    """``async with NodeAgent(AgentSettings(...)) as agent``.

    A stop, step by step (the reverse of ``_start``): the pull loops and side tasks end and
    the node's heartbeat entry goes; running calls and jobs get ``grace_s``, then are
    cancelled (not acked: redelivered elsewhere); then the warm pools, the socket
    directories, NATS and the Docker client.
    """

    def __init__(self, settings: AgentSettings, engine: Engine | None = None) -> None:
        super().__init__(f"node-agent:{settings.node_id}")
        self.settings = settings
        self.layout = Layout(settings.prefix)
        self.tasks = TaskSet(self.name)
        self._calls = TaskSet(f"{self.name}:calls")
        self._engine = engine
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._slots = Slots(settings.slots)
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self.running = 0
        self.instance = secrets.token_hex(6)
        self._jobs: JobWorker | None = None
        self._sockets: SocketDir | None = None
        self.pools: Pools | None = None
        self.nested: NestedCalls | None = None
        self._nodes_kv: KeyValue | None = None
        self._reconnects = 0  # NATS reconnects seen by the last rescue round
        self.metrics = Metrics()  # this agent's registry (node_agent/metrics.py)
        self.metrics_server: MetricsServer | None = None

    # --- lifecycle ----------------------------------------------------------------
    async def _start(self) -> None:
        s = self.settings
        # 0. The secrets key: a bad key file stops the start before anything is made.
        secrets_key = SecretsKey.load(s.secrets_key_file) if s.secrets_key_file else None
        # 1. Clients (closed last) and what this node holds.
        if self._engine is None:
            self._engine = engine = DockerEngine(s.docker_url)
            self.on_stop("docker", engine.close)
            await engine.ping()
        self._nc = nc = await connect(s.nats_url, self.name, s.nats_auth)
        self.on_stop("nats", lambda: drain_or_close(nc))
        self._js = self._nc.jetstream()
        # The gateway makes the layout; the agent's NATS user may not create streams.
        await wait_layout(self._js, agent_streams(self.layout))
        self._nodes_kv = nodes = await self._js.key_value(self.layout.nodes_bucket)
        await claim_node_id(nodes, s.node_id, s.heartbeat_s)
        # An earlier run's containers (killed before teardown): their calls are redelivered.
        if removed := await self._engine.remove_labelled(f"faas.node={s.node_id}"):
            log.info("agent.orphans_removed", extra=fields(node=s.node_id, count=removed))
        # Containers with network access: on the sealed network, or refused (containers/firewall.py).
        if s.network_seal:
            self._seal = NetworkSeal(self._engine, s.seal(), s.node_id)
            await self._seal.check(at_start=True)
        else:
            self._engine.open_network()
            log.warning("agent.network_unsealed_by_setting", extra=fields(node=s.node_id))
        runtimes_kv = await self._js.key_value(self.layout.runtimes_bucket)
        functions_kv = await self._js.key_value(self.layout.functions_bucket)
        self._catalog = Catalog(runtimes_kv, functions_kv)
        self._artifacts = ArtifactCache(
            await self._js.object_store(self.layout.artifacts_bucket), s.cache_dir, s.artifact_cache_bytes, s.call_owner
        )
        ca = str(s.ca_bundle) if s.ca_bundle else None
        deps = DependencyImages(self._engine, self._artifacts, s.node_id, ca)
        local_docker = s.docker_url is None or s.docker_url.startswith("unix://")
        self._sockets = SocketDir(s.socket_dir, name=s.node_id) if s.handler_sockets and local_docker else None
        if self._sockets is not None:
            self.on_stop("sockets", self._sockets.cleanup)
            if swept := self._sockets.sweep():
                log.info("agent.socket_dirs_removed", extra=fields(node=s.node_id, count=swept))
        if s.policy != "none":
            factory = WarmFactory(self._engine, self._artifacts, deps, self._catalog, s.node_id, ca, self._sockets)
            config = pool_config(s)
            self.pools = Pools(self._engine, factory, config)
            # Once no call holds a warm container (after the in-flight step).
            self.on_stop("pools", self.pools.close)
        self.executor = Executor(self._engine, self._artifacts, deps, s.node_id, s.policy, ca, self.pools)
        # Cancel requests of calls and jobs (node_agent/cancels.py), loaded before any is taken.
        cancels = CancelWatch(await self._js.key_value(self.layout.cancels_bucket), s.node_id)
        self.on_stop("cancels", cancels.stop)
        await cancels.start()
        self.nested = nested = NestedCalls(self._nc, self._js, self.layout, self._catalog, self._slots, s.nested())
        await nested.start()
        self.on_stop("nested", nested.stop)  # once its calls are over (the in-flight step)
        self._calls_runner = CallRunner(
            self._nc,
            self._js,
            self.layout,
            self._catalog,
            self.executor,
            s.node_id,
            s.ack_wait_s,
            s.max_attempts,
            started_after_s=s.started_after_s,
            patience_s=s.nats_patience_s,
            on_finished=CallMetrics(self.metrics.registry).finished,
            cancels=cancels,
            nested=nested if s.nested_calls else None,
        )
        # Container jobs share the node's slots with calls.
        jobs = JobConfig(
            node_id=s.node_id,
            grace_s=s.grace_s,
            ack_wait_s=s.ack_wait_s,
            max_attempts=s.max_attempts,
            memory_mb=s.job_memory_mb,
            cpus=s.job_cpus,
            pids_limit=s.job_pids,
            max_memory_mb=s.job_max_memory_mb,
            max_cpus=s.job_max_cpus_or_cores,
            max_timeout_s=s.job_max_timeout_s,
            patience_s=s.nats_patience_s,
        )
        self._jobs = JobWorker(jobs, self._slots, self._nc, self.layout, self._engine, self.tasks, secrets_key, cancels)

        # The metrics (node_agent/metrics.py) of what this agent holds, read at each scrape.
        view = AgentView(s.node_id, s.policy, self._slots, lambda: self.running, self.pools, self._engine)
        self.metrics.registry.register(AgentCollector(view))
        server = MetricsServer(self.name, self.metrics, s.metrics_host, s.metrics_port, lambda: nc.is_connected)
        self.on_stop("metrics-http", server.stop)
        await server.start()
        self.metrics_server = server

        # 2. Running calls and jobs once intake has stopped: the grace period, then cancelled.
        self.on_stop("in-flight", self._drain_in_flight)
        # Right after intake: the gateway stops routing here now, not once the entry is stale.
        self.on_stop("node-entry", self._withdraw)

        # 3. Intake and side tasks (a stop's first step ends them all, later ones included).
        self.on_stop("intake", self._stop_intake)
        if self.pools is not None:
            self.tasks.spawn(self.pools.maintain(), "pools")
            if s.policy == "adaptive":  # a stem cell ready for each new version's first call
                fetch = Prefetch(self._catalog, self._artifacts)
                versions = follow_new_versions(functions_kv, self.pools, s.serves, s.expect_first_call_s, fetch)
                self.tasks.spawn(versions, "new-versions")
        # Work the gateway routes to this node because it holds the function/runtime warm.
        await self._serve(self.layout.invoke_node(s.node_id), self.layout.node_consumer(s.node_id), NODE_LOOP)
        await self._jobs.start()
        kvs = (runtimes_kv, functions_kv)
        images = ImagePruner(self._engine, deps, *kvs, s.node_id, s.cache_dir, s.image_prune_s, s.image_idle_s)
        self.tasks.spawn(images.run(self._stopping), "image-prune")
        # Side loops that pause with NATS (common/periodic.py): a failed round is logged, retried.
        self.tasks.spawn(every(s.heartbeat_s, self._beat, "heartbeat"), "heartbeat")
        rescue_s = max(s.heartbeat_s * 2, 1.0)
        self.tasks.spawn(every(rescue_s, self._rescue, "rescue", first_now=False), "rescue")
        if s.network_seal:
            self.tasks.spawn(every(s.network_check_s, self._seal.check, "network", first_now=False), "network-seal")
        if s.runtimes:
            for rt in s.runtimes:
                await self._serve_runtime(rt)
        else:
            self.tasks.spawn(self._follow_runtimes(), "follow-runtimes")
        log.info(
            "agent.started",
            extra=fields(node=s.node_id, slots=s.slots, policy=s.policy, runtimes=",".join(s.runtimes) or "*"),
        )

    async def _stop_intake(self) -> None:
        """No new pull requests (what a loop was handed and had not taken goes back at once),
        and the side tasks end: heartbeat, rescue, runtime follow, pool upkeep, job intake."""
        self._stopping.set()
        # Side tasks first: the runtime follow could otherwise start a loop meanwhile.
        await self.tasks.cancel_all()
        loops = list(self._loops.values())
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    async def _withdraw(self) -> None:
        assert self._nodes_kv is not None
        try:
            await self._nodes_kv.delete(self.settings.node_id)
        except Exception:  # NATS may be gone; the entry expires by TTL anyway
            log.debug("agent.heartbeat_delete_failed", exc_info=True)

    async def _drain_in_flight(self) -> None:
        """Calls and jobs share the grace period (not one after the other). A cancelled call's
        message is not acked, so it is redelivered to another agent; jobs go back likewise."""
        assert self._jobs is not None
        results = await asyncio.gather(
            self._calls.drain(self.settings.grace_s), self._jobs.stop(), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # --- intake -------------------------------------------------------------------
    async def _follow_runtimes(self) -> None:
        assert self._js is not None
        await follow(await self._js.key_value(self.layout.runtimes_bucket), self._runtime_changed, "runtimes")

    async def _runtime_changed(self, entry: KeyValue.Entry) -> None:
        if entry.value and entry.key not in self._loops:
            await self._serve_runtime(entry.key)
        elif not entry.value and entry.key in self._loops:
            self._loops.pop(entry.key).cancel()
            if self.pools is not None:
                self.pools.set_minimum(PoolKey.runtime(entry.key), 0)
            log.info("agent.runtime_removed", extra=fields(runtime=entry.key))

    async def _serve_runtime(self, runtime: str) -> None:
        await self._serve(self.layout.invoke_runtime(runtime), self.layout.runtime_consumer(runtime), runtime)
        if self.settings.policy == "adaptive" and self.pools is not None:
            # stem cells of every runtime served, ready for the first call of a new function
            self.pools.set_minimum(PoolKey.runtime(runtime), self.settings.stem_min)
        log.info("agent.serving", extra=fields(runtime=runtime, node=self.settings.node_id))

    def _consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            # One delivery more than attempts: the last one only records the give-up.
            max_deliver=self.settings.max_attempts + 1,
            max_ack_pending=-1,
        )

    async def _serve(self, subject: str, durable: str, key: str) -> None:
        assert self._js is not None and self._nc is not None
        stream = self.layout.invoke_stream
        config = self._consumer_config()
        config.durable_name = durable
        config.filter_subject = subject
        # CONSUMER.CREATE without an action creates or updates: a changed config applies.
        await self._js.add_consumer(stream, config)
        # Deleted while this node was away (taken for dead): made again when a pull finds it gone.
        pull = await PullConsumer.bind(self._nc, stream, durable, self.settings.fetch_timeout_s, config)
        task = asyncio.create_task(self._pull_loop(key, pull), name=f"{self.name}:pull:{key}")
        task.add_done_callback(self._loop_done)
        self._loops[key] = task

    def _loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("agent.pull_loop_failed", exc_info=task.exception())
            self.tasks.failure = task.exception()
            self.tasks.failed.set()

    async def _pull_loop(self, runtime: str, pull: PullConsumer) -> None:
        nc, wait_s = self._nc, self.settings.fetch_timeout_s
        assert nc is not None
        try:
            # stop() cancels this task; the flag ends it too if a library swallowed that cancel
            while not self._stopping.is_set():
                # A request open on every subject while a slot is free, none reserved for it:
                # all are withdrawn once the last slot is taken (calls/slots.py).
                await self._slots.wait_free()
                try:
                    msg = await poll_one(nc, pull.next_subject, wait_s, self._slots.when_full())
                except ConsumerGone as err:  # deleted while this node was away: made again
                    try:
                        await pull.recreate(str(err))
                    except ConsumerGone as again:
                        log.warning("agent.consumer_gone", extra=fields(runtime=runtime, error=str(again)))
                        await asyncio.sleep(1.0)
                    continue
                if msg is not None:
                    await take_slot(self._slots, msg, self.settings.ack_wait_s)  # and the calls its acks bring
                    self._calls.spawn(self._handle(msg, pull), f"slot:{runtime}", critical=False)
        finally:
            # Delivered to an ack's request but not taken (a stop in between): handed back.
            await asyncio.shield(pull.close(settle=False))

    # --- one call -------------------------------------------------------------------
    async def _handle(self, msg: Msg, pull: PullConsumer) -> None:
        """Run calls with one slot: this one, then the ones its acks ask for (``ack_next``:
        under load the next call comes with the ack's answer, without a pull request), at
        most ``CHAIN_MAX`` in a row so that other subjects and jobs waiting for a slot get
        their turn; then the slot is released."""
        self.running += 1
        ran = 0
        following: asyncio.Future[Msg | None] | None = None  # what the last ack asked for

        async def ack(done: Msg) -> None:
            nonlocal following
            if ran < CHAIN_MAX and not self._stopping.is_set():
                following = await pull.ack_next(done, CHAIN_WAIT_S)
            else:
                await done.ack()

        try:
            current: Msg | None = msg
            while current is not None:
                ran += 1
                following = None
                try:
                    await self._calls_runner.handle(current, ack)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Not acked: it will be redelivered (bounded by max_attempts).
                    log.exception("call.handler_failed", extra=fields(subject=current.subject))
                current = await following if following is not None else None
        finally:
            self.running -= 1
            self._slots.release()

    def state(self) -> NodeState:
        warm = self.pools.idle_counts() if self.pools else {}
        return NodeState(
            node_id=self.settings.node_id,
            instance=self.instance,
            policy=self.settings.policy,
            slots=self.settings.slots,
            # a call waiting for its nested calls holds no slot (node_agent/nested/parking.py)
            free=self.settings.slots - self.running + (self.nested.parking.count if self.nested else 0),
            runtimes=sorted(k for k in self._loops if k != NODE_LOOP),
            warm_runtimes={k.label: n for k, n in warm.items() if k.layer is Layer.RUNTIME},
            warm_functions={k.label: n for k, n in warm.items() if k.layer is Layer.FUNCTION},
            job_max=self._jobs.config.maxima if self._jobs is not None else None,
        )

    async def _beat(self) -> None:
        """The node's state in the nodes bucket (TTL'd): the gateway routes by it."""
        assert self._nodes_kv is not None
        await self._nodes_kv.put(self.settings.node_id, encode(self.state()))

    async def _rescue(self) -> None:
        nc, kv = self._nc, self._nodes_kv
        assert nc is not None and kv is not None
        # Right after NATS was away the other nodes' entries may have expired meanwhile: one
        # round is left out, for their heartbeats to come back before they are taken for dead.
        reconnects, self._reconnects = self._reconnects, nc.stats["reconnects"]
        if reconnects == nc.stats["reconnects"]:
            await rescue_dead_nodes(nc, self.layout, kv, self._catalog, self.settings.node_id)
