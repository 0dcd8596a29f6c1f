"""Gateway configuration: environment variables prefixed ``FAAS_GATEWAY_``."""

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from common.hosts import is_loopback_host
from common.jetstream import LayoutLimits
from common.natsclient import NatsClientSettings
from gateway.uploads import UploadLimits

MiB = 1 << 20
GiB = 1 << 30


class GatewaySettings(NatsClientSettings):
    """Tests construct this directly, e.g. ``GatewaySettings(nats_url=url, port=0)``."""

    model_config = SettingsConfigDict(env_prefix="FAAS_GATEWAY_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    # Replicas of every stream, KV bucket and the object store: "auto" = min(3, the NATS
    # servers of the cluster: common/jetstream.py layout_replicas), or a number (1-5). An
    # existing asset with fewer is raised at start; none is lowered.
    nats_replicas: Annotated[int, Field(ge=1, le=5)] | Literal["auto"] = "auto"
    prefix: str = "faas"
    host: str = "0.0.0.0"
    # 0 lets the OS pick a free port; read it back from ``Gateway.port``.
    port: int = Field(default=8080, ge=0, le=65535)
    max_upload_bytes: int = Field(default=50 * MiB, ge=1)
    # A function upload's other parts: at most this many parts in all, each text field at most
    # this many bytes (past them: 400 and 413).
    max_upload_parts: int = Field(default=16, ge=2, le=1000)
    max_upload_field_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * MiB)
    max_params_bytes: int = Field(default=256 * 1024, ge=1)
    # An archive may expand to at most this many times its upload limit (zip bombs).
    max_expansion: int = Field(default=4, ge=1)
    sync_wait_s: float = Field(default=30.0, ge=0)
    max_sync_wait_s: float = Field(default=300.0, ge=0)
    # A sync call also checks the events stream this often, in case its subscription missed
    # the Finished event (NATS reconnect): the worst-case extra latency of such a call.
    sync_poll_s: float = Field(default=1.0, gt=0)
    # A sync call still running after this is announced (its record shows QUEUED); a shorter
    # one is recorded from its finished event alone. 0 announces every call at once. Not
    # shorter: when calls queue (more callers than slots), an event per waiting call is more
    # work for NATS and the store exactly when the node is overloaded.
    announce_after_s: float = Field(default=0.5, ge=0)
    store_timeout_s: float = Field(default=5.0, gt=0)
    # At start, how long the gateway waits for JetStream to make the layout (a cluster
    # electing its leader, too few servers up yet for the replicas) before it gives up.
    layout_wait_s: float = Field(default=60.0, ge=0)
    # How long stop() lets in-flight HTTP requests and NATS calls finish before cancelling them.
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    # Function archives (gateway/artifact_sweep.py): those of each function's last
    # keep_versions versions are kept (a deleted function: none); the rest are removed by a
    # sweep soon after each registration or deletion and every artifact_sweep_s, once
    # stored more than artifact_grace_s ago. At most the functions bucket's history (64).
    keep_versions: int = Field(default=10, ge=1, le=64)
    artifact_sweep_s: float = Field(default=3600.0, gt=0)
    artifact_grace_s: float = Field(default=600.0, ge=0)
    # Container jobs: the largest ``POST /v1/jobs`` body.
    max_job_bytes: int = Field(default=256 * 1024, ge=1)
    # Live logs (Server-Sent Events): a comment this often keeps idle streams (and proxies) open;
    # at most this many streams at once on this gateway (503 beyond).
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    max_log_streams: int = Field(default=1000, ge=1)
    # Callbacks: POST a finished call to its callback URL; retried with exponential backoff
    # (first delay, doubling, capped) up to max_attempts or the deadline; at most
    # callback_concurrency deliveries at once on this gateway.
    callbacks: bool = True
    callback_concurrency: int = Field(default=32, ge=1, le=10_000)
    callback_timeout_s: float = Field(default=10.0, gt=0)
    callback_max_attempts: int = Field(default=5, ge=1, le=100)
    callback_backoff_s: float = Field(default=0.5, ge=0)
    callback_max_backoff_s: float = Field(default=30.0, ge=0)
    callback_deadline_s: float = Field(default=300.0, gt=0)
    # A dispatch that ends without recording its outcome (a gateway stopped or died) is
    # redelivered, this many times at most; then a failed outcome is recorded (no more POSTs).
    callback_max_dispatches: int = Field(default=5, ge=1, le=100)
    # Callback URLs may only reach public addresses (gateway/callback_guard.py): these networks
    # are let through all the same (e.g. "10.1.0.0/16,127.0.0.1/32"), these refused too (the
    # platform's other hosts). A comma-separated list or a JSON array.
    callback_allow_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    callback_deny_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    # The platform's secrets key (common/sealing.py; `faas up` makes <data-dir>/secrets.key):
    # job secrets are sealed with it for the agents. Without one, a job with secret_env or
    # registry_auth is refused (400).
    secrets_key_file: Path | None = None
    # The streams the gateway creates (README "Limits and retention"), applied at every start
    # (an existing stream is updated in place). Events (discard OLD): the oldest go at either
    # limit. Invoke (discard NEW): a call or job past either limit is refused with a 503
    # queue_full (Retry-After: queue_full_retry_after_s); invoke_max_age_s 0 is no age limit.
    events_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    events_max_bytes: int = Field(default=GiB, ge=1024)
    invoke_max_msgs: int = Field(default=1_000_000, ge=1)
    invoke_max_bytes: int = Field(default=GiB, ge=1024)
    invoke_max_age_s: float = Field(default=0.0, ge=0)
    queue_full_retry_after_s: int = Field(default=5, ge=1)
    log_level: str = "INFO"
    # API tokens (README "Authentication and roles"). Off only on a loopback address: then
    # anyone who can reach the port owns the platform, so that must be this machine alone.
    auth: bool = True
    # If set, the gateway makes sure at start that this file (mode 0600) holds a valid admin
    # token, creating one when the file is missing or its token is not valid (`faas up`:
    # <data-dir>/admin.token).
    admin_token_file: Path | None = None
    # Host header names of this gateway besides loopback names, IP literals and the bind
    # address (a browser's request for any other name is a DNS rebinding). "*": any.
    allowed_hosts: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_auth_on_loopback_only(self) -> Self:
        if not self.auth and not is_loopback_host(self.host):
            raise ValueError(
                f"auth is off (FAAS_GATEWAY_AUTH=false) but the gateway would listen on {self.host!r}: "
                "without auth it listens on loopback only (127.0.0.0/8, ::1, localhost)"
            )
        return self

    @field_validator("callback_allow_networks", "callback_deny_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [n.strip() for n in text.split(",") if n.strip()]
        return value

    def layout_limits(self) -> LayoutLimits:
        return LayoutLimits(
            events_max_age_s=self.events_max_age_s,
            events_max_bytes=self.events_max_bytes,
            invoke_max_msgs=self.invoke_max_msgs,
            invoke_max_bytes=self.invoke_max_bytes,
            invoke_max_age_s=self.invoke_max_age_s,
        )

    @property
    def upload_limits(self) -> UploadLimits:
        return UploadLimits(self.max_upload_bytes, self.max_upload_field_bytes, self.max_upload_parts)

    @property
    def max_uncompressed_bytes(self) -> int:
        return self.max_upload_bytes * self.max_expansion
