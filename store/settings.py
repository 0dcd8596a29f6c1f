"""Settings of the store service, from ``FAAS_STORE_*`` environment variables."""

from typing import Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.natsclient import NatsClientSettings
from schemas import Layout, is_valid_name


class StoreSettings(NatsClientSettings):
    model_config = SettingsConfigDict(env_prefix="FAAS_STORE_")

    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "faas"
    # A SQLite file's parent directory is created when the engine is made (store.db).
    database_url: str = "sqlite+aiosqlite:///data/faas.db"
    # Events applied per transaction: the unit of throughput into SQLite.
    batch_size: int = Field(default=512, ge=1, le=10_000)
    # How long a batch that is not full waits for more events after its first: under a
    # trickle, fewer and larger transactions (less CPU per event) for that much delay
    # before a record is stored. 0: write what has arrived at once.
    linger_s: float = Field(default=0.005, ge=0, le=1.0)
    # How long one fetch waits for events; also bounds how long a graceful stop waits.
    fetch_timeout_s: float = Field(default=1.0, gt=0)
    # While the database is unavailable (down, locked, full), the batch in hand is retried
    # after this delay, doubling up to max_retry_delay_s; nothing is set aside meanwhile.
    retry_delay_s: float = Field(default=0.5, gt=0)
    max_retry_delay_s: float = Field(default=10.0, gt=0)
    # Redelivery delay of events a store took but never acknowledged (it was killed, say).
    ack_wait_s: float = Field(default=30.0, gt=0)
    # Deliveries of one event before JetStream gives up on it: the last one is applied alone
    # and set aside as a dead letter if the database refuses it (store/ingest.py).
    max_deliver: int = Field(default=10, ge=2, le=1000)
    # Call records last written (with their log lines), job records created and dead letters
    # set aside longer ago than this are deleted (store/retention.py); 0 keeps them for
    # ever. Checked every retention_interval_s, in transactions of at most retention_batch rows.
    retention_days: float = Field(default=30.0, ge=0)
    retention_interval_s: float = Field(default=3600.0, gt=0)
    retention_batch: int = Field(default=1000, ge=1, le=10_000)
    # How long stop() waits for the batch in hand before cancelling the ingest loop.
    stop_grace_s: float = Field(default=10.0, ge=0)
    # Scheduling niceness of the store's process (its threads included), set at start: the
    # store is off the call path, so on a machine it shares with the gateway, agents and
    # functions it yields the CPU to them and catches up in larger (cheaper) batches. Events
    # wait in the events stream meanwhile. 0: leave it as started.
    nice: int = Field(default=10, ge=0, le=19)
    # GET /metrics (Prometheus) and GET /healthz, without a token: loopback unless a scraper
    # elsewhere needs it (common/metrics_http.py). Port 0: a free one (tests).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9182, ge=0, le=65535)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _retry_delays(self) -> Self:
        if self.max_retry_delay_s < self.retry_delay_s:
            raise ValueError("max_retry_delay_s must be at least retry_delay_s")
        return self

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, v: str) -> str:
        if not is_valid_name(v):
            raise ValueError(f"invalid NATS prefix {v!r}")
        return v

    @property
    def layout(self) -> Layout:
        return Layout(prefix=self.prefix)
