"""Following one call's or job's output on the events stream, from its first event.

An ordered consumer (ephemeral, flow-controlled, recreated by nats-py on a gap) on
``<prefix>.events.<id>.>`` with deliver-all replays what was published before the reader
came and then goes on live, so a reader sees every line whether it connects before, during
or after the run. Chunks are taken in (attempt, seq) order: a duplicate or an older chunk is
dropped. The ``finished`` (call) or ``job_finished`` (job) event ends the output.
"""

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from common.logs import fields
from schemas import (
    Finished,
    InvalidMessage,
    JobFinished,
    Layout,
    LogEntry,
    Logs,
    decode_event,
    decode_job_event,
)

log = logging.getLogger(__name__)

# Kinds that end a call's or a job's output.
_FINAL = ("finished", "job_finished")


@dataclass(frozen=True)
class End:
    """The call or job has ended with ``status``."""

    status: str


@dataclass(frozen=True)
class Chunk:
    lines: list[LogEntry]
    truncated: bool = False


class LogFollow:
    """``async with LogFollow(js, layout, id) as f: item = await f.next()``."""

    def __init__(self, js: JetStreamContext, layout: Layout, id: str) -> None:
        self._js = js
        self._layout = layout
        self.id = id
        self._sub: JetStreamContext.PushSubscription | None = None
        self._last: tuple[int, int] | None = None
        self.ended = False

    async def open(self) -> None:
        self._sub = await self._js.subscribe(
            self._layout.events_of(self.id),
            stream=self._layout.events_stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is closing: the ephemeral consumer goes with it
                log.debug("logs.follow.unsubscribe_failed", exc_info=True)

    async def __aenter__(self) -> "LogFollow":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def has_events(self) -> bool:
        """Whether the events stream holds anything about this id yet."""
        info = await self._js.stream_info(self._layout.events_stream, subjects_filter=self._layout.events_of(self.id))
        return bool(info.state.subjects)

    async def next(self) -> Chunk | End | None:
        """The next new chunk of lines, the end, or None for an event that carries neither
        (accepted, started, a duplicate chunk...). Waits for as long as it takes."""
        assert self._sub is not None, "open() first"
        msg = await self._sub.next_msg(timeout=None)
        kind = msg.subject.rsplit(".", 1)[-1]
        if kind != "log" and kind not in _FINAL:
            return None
        try:
            event = decode_job_event(msg.data) if kind == "job_finished" else decode_event(msg.data)
        except InvalidMessage as err:
            log.warning("logs.event.invalid", extra=fields(subject=msg.subject, error=str(err)))
            return None
        if isinstance(event, Logs):
            key = (event.attempt, event.seq)
            if self._last is not None and key <= self._last:
                return None
            self._last = key
            return Chunk(event.lines, event.truncated)
        if isinstance(event, Finished | JobFinished):
            self.ended = True
            return End(event.status.value)
        return None
