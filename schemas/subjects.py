"""The NATS layout: streams, subjects, KV buckets, the object store and service subjects.

Every name is derived from one configurable prefix (default ``faas``) so that several
installations can share a NATS cluster.
"""

from dataclasses import dataclass

from schemas.names import is_valid_name


@dataclass(frozen=True)
class Layout:
    prefix: str = "faas"

    def __post_init__(self) -> None:
        if not is_valid_name(self.prefix):
            raise ValueError(f"invalid NATS prefix {self.prefix!r}")

    # --- streams -------------------------------------------------------------
    @property
    def invoke_stream(self) -> str:
        return f"{self.prefix.upper()}_INVOKE"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    # --- invocations (stream FAAS_INVOKE, work-queue) ---------------------------
    @property
    def invoke_all(self) -> str:
        return f"{self.prefix}.invoke.>"

    def invoke_runtime(self, runtime: str) -> str:
        """Where a runtime's invocations wait; one durable consumer per runtime."""
        return f"{self.prefix}.invoke.rt.{runtime}"

    def invoke_node(self, node_id: str) -> str:
        """Work routed to one node (it holds the function or runtime warm)."""
        return f"{self.prefix}.invoke.node.{node_id}"

    def runtime_consumer(self, runtime: str) -> str:
        return f"rt_{runtime}"

    def node_consumer(self, node_id: str) -> str:
        return f"node_{node_id}"

    def invoke_job(self, priority: int) -> str:
        """Jobs wait here by priority (0..9); agents take the highest non-empty first."""
        return f"{self.prefix}.invoke.job.{priority}"

    def job_consumer(self, priority: int) -> str:
        return f"job_p{priority}"

    # --- events (stream FAAS_EVENTS, limits) -------------------------------------
    @property
    def events_all(self) -> str:
        return f"{self.prefix}.events.>"

    def event(self, call_id: str, kind: str) -> str:
        return f"{self.prefix}.events.{call_id}.{kind}"

    def events_of(self, call_id: str) -> str:
        return f"{self.prefix}.events.{call_id}.>"

    def callback_due(self, call_id: str) -> str:
        """A copy of the ``finished`` event of a call that has a callback URL, published only
        for such calls, so that the callback dispatcher's consumer sees nothing else."""
        return self.event(call_id, "callback_due")

    @property
    def callbacks_due(self) -> str:
        return self.event("*", "callback_due")

    @property
    def store_consumer(self) -> str:
        return "store"

    # --- KV buckets and object store -------------------------------------------
    @property
    def runtimes_bucket(self) -> str:
        return f"{self.prefix}_runtimes"

    @property
    def functions_bucket(self) -> str:
        return f"{self.prefix}_functions"

    @property
    def nodes_bucket(self) -> str:
        return f"{self.prefix}_nodes"

    @property
    def artifacts_bucket(self) -> str:
        return f"{self.prefix}_artifacts"

    @property
    def cancels_bucket(self) -> str:
        """Cancel requests of calls and jobs (key = call or job id): checked before one starts,
        watched while it runs."""
        return f"{self.prefix}_cancels"

    @property
    def tokens_bucket(self) -> str:
        """API tokens, hashed (``schemas.tokens``): read by the gateways (and the NATS admin) only."""
        return f"{self.prefix}_tokens"

    # --- request/reply services ------------------------------------------------
    def call(self, function: str) -> str:
        """``nats req faas.call.<function> '<params json>'`` runs a call synchronously."""
        return f"{self.prefix}.call.{function}"

    @property
    def call_all(self) -> str:
        return f"{self.prefix}.call.*"

    def cancel(self, call_id: str) -> str:
        """``nats req faas.cancel.<call_id> ''`` cancels a call (as ``POST /v1/calls/{id}/cancel``)."""
        return f"{self.prefix}.cancel.{call_id}"

    @property
    def cancel_all(self) -> str:
        return f"{self.prefix}.cancel.*"

    @property
    def store_get_call(self) -> str:
        return f"{self.prefix}.store.calls.get"

    @property
    def store_list_calls(self) -> str:
        return f"{self.prefix}.store.calls.list"

    @property
    def store_call_stats(self) -> str:
        """Call statistics over a recent window (``schemas.stats``)."""
        return f"{self.prefix}.store.calls.stats"

    @property
    def store_call_tree(self) -> str:
        return f"{self.prefix}.store.calls.tree"

    @property
    def store_get_logs(self) -> str:
        return f"{self.prefix}.store.logs.get"

    @property
    def store_get_job(self) -> str:
        return f"{self.prefix}.store.jobs.get"

    @property
    def store_list_jobs(self) -> str:
        return f"{self.prefix}.store.jobs.list"

    @property
    def store_list_dead_letters(self) -> str:
        return f"{self.prefix}.store.dead_letters.list"
