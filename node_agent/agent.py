"""The node agent: one pull loop per served runtime, bounded by free slots.

Per message: decode -> look up function and runtime -> publish Started -> run -> publish
Finished -> ack. The ack comes only after the final event is stored in JetStream, so a call
whose agent dies is redelivered; while it runs, ``in_progress`` keeps it from being
redelivered early.
"""

import asyncio
import logging
import secrets
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from common.jetstream import connect, ensure_layout
from common.lifecycle import TaskSet
from common.logs import fields
from node_agent.artifacts import ArtifactCache
from node_agent.catalog import Catalog
from node_agent.deps import DependencyImages
from node_agent.docker import DockerEngine, Engine
from node_agent.errors import AgentError
from node_agent.executor import Executor
from node_agent.jobs import JobConfig, JobWorker
from node_agent.logstream import LogPublisher
from node_agent.nodeid import claim_node_id
from node_agent.outcome import Outcome, elapsed_ms, error_outcome
from node_agent.pools import PoolConfig, Pools
from node_agent.rescue import RESCUED_NUMBER, rescue_dead_nodes
from node_agent.settings import AgentSettings
from schemas import (
    CallStatus,
    ErrorInfo,
    Finished,
    InvalidMessage,
    Invocation,
    Layout,
    NodeState,
    Started,
    decode,
    encode,
)

log = logging.getLogger(__name__)

NODE_LOOP = "<node>"


class NodeAgent:
    def __init__(self, settings: AgentSettings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.name = f"node-agent:{settings.node_id}"
        self.layout = Layout(settings.prefix)
        self.tasks = TaskSet(self.name)
        self._calls = TaskSet(f"{self.name}:calls")
        self._engine = engine
        self._own_engine = engine is None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._slots = asyncio.Semaphore(settings.slots)
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._started = False
        self.running = 0
        self.instance = secrets.token_hex(6)
        self._jobs: JobWorker | None = None

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        s = self.settings
        if self._engine is None:
            engine = DockerEngine(s.docker_url)
            await engine.ping()
            self._engine = engine
        self._nc = await connect(s.nats_url, self.name)
        self._js = self._nc.jetstream()
        await ensure_layout(self._js, self.layout)
        self._nodes_kv = await self._js.key_value(self.layout.nodes_bucket)
        await claim_node_id(self._nodes_kv, s.node_id, s.heartbeat_s)
        # Containers of an earlier run of this node (killed before teardown): their calls
        # were not acked and are redelivered, so the containers are only garbage.
        if removed := await self._engine.remove_labelled(f"faas.node={s.node_id}"):
            log.info("agent.orphans_removed", extra=fields(node=s.node_id, count=removed))
        self._catalog = Catalog(
            await self._js.key_value(self.layout.runtimes_bucket),
            await self._js.key_value(self.layout.functions_bucket),
        )
        self._artifacts = ArtifactCache(await self._js.object_store(self.layout.artifacts_bucket), s.cache_dir)
        ca = str(s.ca_bundle) if s.ca_bundle else None
        deps = DependencyImages(self._engine, self._artifacts, s.node_id, ca)
        self.executor = Executor(self._engine, self._artifacts, deps, s.node_id, s.policy, ca, runtimes=self._catalog)
        self.pools: Pools | None = None
        if s.policy != "none":
            mins = {"rt:" + rt: s.pool_min for rt in s.runtimes} if s.policy == "warm-runtime" else {}
            config = PoolConfig(
                min_per_key=mins,
                max_per_key=s.pool_max,
                max_warm=s.max_warm,
                idle_s=s.pool_idle_s,
                window_s=s.demand_window_s,
            )
            self.pools = Pools(self._engine, self.executor.make_warm, config)
            self.executor.pools = self.pools
            self.tasks.spawn(self.pools.maintain(), "pools")
        # Work the gateway routes to this node because it holds the function/runtime warm.
        await self._serve(self.layout.invoke_node(s.node_id), self.layout.node_consumer(s.node_id), NODE_LOOP)
        # Container jobs share the node's slots with calls.
        jobs = JobConfig(node_id=s.node_id, grace_s=s.grace_s, ack_wait_s=s.ack_wait_s, max_attempts=s.max_attempts)
        self._jobs = JobWorker(jobs, self._slots, self._nc, self.layout, self._engine, tasks=self.tasks)
        await self._jobs.start()
        self.tasks.spawn(self._heartbeat(), "heartbeat")
        self.tasks.spawn(self._rescue_loop(), "rescue")
        if s.runtimes:
            for rt in s.runtimes:
                await self._serve_runtime(rt)
        else:
            self.tasks.spawn(self._follow_runtimes(), "follow-runtimes")
        log.info(
            "agent.started",
            extra=fields(node=s.node_id, slots=s.slots, policy=s.policy, runtimes=",".join(s.runtimes) or "*"),
        )

    async def stop(self) -> None:
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        # 1. stop intake: no new pull requests
        for task in self._loops.values():
            task.cancel()
        await asyncio.gather(*self._loops.values(), return_exceptions=True)
        await self.tasks.cancel_all()
        try:
            await self._nodes_kv.delete(self.settings.node_id)
        except Exception:  # NATS may be gone; the entry expires by TTL anyway
            log.debug("agent.heartbeat_delete_failed", exc_info=True)

        # 2. let running calls finish up to the grace period, then cancel the rest: their
        #    messages are not acked, so they are redelivered to another agent.
        async def drain_calls() -> None:
            if not await self._calls.wait_all(self.settings.grace_s):
                log.warning("agent.cancelling_calls", extra=fields(count=len(self._calls)))
                await self._calls.cancel_all()

        await asyncio.gather(drain_calls(), self._jobs.stop() if self._jobs else asyncio.sleep(0))
        # 3. no call holds a warm container now: destroy the pools
        if self.pools is not None:
            await self.pools.close()
        if self._nc is not None:
            await self._nc.drain()
        if self._engine is not None and self._own_engine:
            await self._engine.close()
        log.info("agent.stopped", extra=fields(node=self.settings.node_id))

    async def __aenter__(self) -> "NodeAgent":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- intake -------------------------------------------------------------------
    async def _follow_runtimes(self) -> None:
        assert self._js is not None
        kv = await self._js.key_value(self.layout.runtimes_bucket)
        watcher = await kv.watchall()
        try:
            while True:
                entry = await watcher.updates(timeout=None)  # type: ignore[no-untyped-call]
                if entry is None:
                    continue
                if entry.value and entry.key not in self._loops:
                    await self._serve_runtime(entry.key)
                elif not entry.value and entry.key in self._loops:
                    self._loops.pop(entry.key).cancel()
                    log.info("agent.runtime_removed", extra=fields(runtime=entry.key))
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def _serve_runtime(self, runtime: str) -> None:
        await self._serve(self.layout.invoke_runtime(runtime), self.layout.runtime_consumer(runtime), runtime)
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
        assert self._js is not None
        sub = await self._js.pull_subscribe(
            subject, durable=durable, stream=self.layout.invoke_stream, config=self._consumer_config()
        )
        task = asyncio.create_task(self._pull_loop(key, sub), name=f"{self.name}:pull:{key}")
        task.add_done_callback(self._loop_done)
        self._loops[key] = task

    def _loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("agent.pull_loop_failed", exc_info=task.exception())
            self.tasks.failure = task.exception()
            self.tasks.failed.set()

    async def _pull_loop(self, runtime: str, sub: JetStreamContext.PullSubscription) -> None:
        try:
            while True:
                # A pull request is issued only with a free slot reserved for its message.
                await self._slots.acquire()
                try:
                    msgs = await sub.fetch(1, timeout=self.settings.fetch_timeout_s)
                except TimeoutError:  # nats-py raises its own subclass, or the builtin
                    self._slots.release()
                    continue
                except BaseException:
                    self._slots.release()
                    raise
                for msg in msgs:
                    self._calls.spawn(self._handle(msg), f"call:{msg.metadata.sequence.stream}", critical=False)
        finally:
            await sub.unsubscribe()

    # --- one call -------------------------------------------------------------------
    async def _handle(self, msg: Msg) -> None:
        self.running += 1
        try:
            await self._handle_inner(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not acked: it will be redelivered (bounded by max_attempts).
            log.exception("call.handler_failed", extra=fields(subject=msg.subject))
        finally:
            self.running -= 1
            self._slots.release()

    async def _handle_inner(self, msg: Msg) -> None:
        assert self._js is not None
        meta = msg.metadata
        # A call rescued from a dead node's subject keeps the number it was accepted with.
        rescued = (msg.headers or {}).get(RESCUED_NUMBER, "")
        number = int(rescued) if rescued.isdigit() else meta.sequence.stream
        attempt = meta.num_delivered
        try:
            inv = decode(Invocation, msg.data)
        except InvalidMessage as err:
            await self._finish(
                msg,
                Finished(
                    call_id=f"n{number}",
                    number=number,
                    status=CallStatus.ERROR,
                    node=self.settings.node_id,
                    error=ErrorInfo(type="InvalidInvocation", message=f"invalid invocation: {err}"),
                ),
            )
            return
        call_id = inv.id or f"n{number}"
        base = dict(
            call_id=call_id,
            number=number,
            function=inv.function,
            version=inv.version,
            params=inv.params,
            node=self.settings.node_id,
            attempt=attempt,
        )
        if attempt > self.settings.max_attempts:
            await self._finish(
                msg,
                Finished(
                    **base,
                    status=CallStatus.ERROR,
                    error=ErrorInfo(
                        type="TooManyAttempts",
                        message=f"gave up after {self.settings.max_attempts} attempts without completing",
                    ),
                ),
            )
            return

        t0 = time.perf_counter()
        keepalive = asyncio.create_task(self._keep_alive(msg), name=f"keepalive:{call_id}")
        try:
            outcome, runtime = await self._run(msg, inv, base)
        finally:
            keepalive.cancel()
        await self._finish(
            msg,
            Finished(
                **{**base, "version": base["version"]},
                runtime=runtime,
                status=outcome.status,
                result=outcome.result,
                error=outcome.error,
                exit_code=outcome.exit_code,
                container=outcome.container,
                duration_ms=elapsed_ms(t0),
                callback_url=inv.callback_url,
            ),
        )

    async def _run(self, msg: Msg, inv: Invocation, base: dict) -> tuple[Outcome, str | None]:  # type: ignore[type-arg]
        assert self._js is not None and self._engine is not None
        routed = msg.subject == self.layout.invoke_node(self.settings.node_id)
        runtime_name = msg.subject.rsplit(".", 1)[-1]
        try:
            function = await self._catalog.function(inv.function, inv.version)
            base["version"] = function.version
            if routed:
                runtime_name = function.runtime
            if function.runtime != runtime_name:
                return error_outcome(
                    AgentError(
                        f"function {function.name!r} belongs to runtime {function.runtime!r}, not {runtime_name!r}"
                    )
                ), runtime_name
            runtime = await self._catalog.runtime(function.runtime)
            # Not awaited for its PubAck (the stream still stores it): nothing depends on it
            # being durable, the Finished event carries everything the record needs.
            assert self._nc is not None
            await self._nc.publish(
                self.layout.event(base["call_id"], "started"),
                encode(Started(**base, runtime=runtime.name)),
                headers={"Nats-Msg-Id": f"{base['call_id']}.started.{base['attempt']}"},
            )
            log.debug(
                "call.started",
                extra=fields(
                    call=base["call_id"],
                    number=base["number"],
                    function=function.name,
                    attempt=base["attempt"],
                ),
            )
            logs = LogPublisher(
                self._js,
                self.layout,
                base["call_id"],
                base["attempt"],
                function.limits.log_bytes,
                number=base["number"],
            )
            async with logs:
                return await self.executor.run(runtime, function, inv, base["call_id"], logs.write), runtime.name
        except AgentError as err:
            return error_outcome(err), runtime_name

    def state(self) -> NodeState:
        warm = self.pools.idle_counts() if self.pools else {}
        return NodeState(
            node_id=self.settings.node_id,
            instance=self.instance,
            policy=self.settings.policy,
            slots=self.settings.slots,
            free=self.settings.slots - self.running,
            runtimes=sorted(k for k in self._loops if k != NODE_LOOP),
            warm_runtimes={k[3:]: n for k, n in warm.items() if k.startswith("rt:")},
            warm_functions={k[3:]: n for k, n in warm.items() if k.startswith("fn:")},
        )

    async def _heartbeat(self) -> None:
        """The node's state in the nodes bucket (TTL'd): the gateway routes by it."""
        while True:
            await self._nodes_kv.put(self.settings.node_id, encode(self.state()))
            await asyncio.sleep(self.settings.heartbeat_s)

    async def _rescue_loop(self) -> None:
        assert self._js is not None
        while True:
            await asyncio.sleep(max(self.settings.heartbeat_s * 2, 1.0))
            await rescue_dead_nodes(self._js, self.layout, self._nodes_kv, self._catalog, self.settings.node_id)

    async def _keep_alive(self, msg: Msg) -> None:
        interval = max(self.settings.ack_wait_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            await msg.in_progress()

    async def _finish(self, msg: Msg, event: Finished) -> None:
        assert self._js is not None
        await self._js.publish(self.layout.event(event.call_id, "finished"), encode(event))
        # The Finished event is stored: a lost ack only means a redelivery, whose second
        # Finished the store ignores (the first final event wins).
        await msg.ack()
        (log.debug if event.status == CallStatus.DONE else log.info)(
            "call.finished",
            extra=fields(
                call=event.call_id,
                number=event.number,
                status=event.status.value,
                ms=event.duration_ms,
                error=event.error.type if event.error else None,
            ),
        )
