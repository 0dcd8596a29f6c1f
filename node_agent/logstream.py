"""A container's output, live, as ``Logs`` chunk events on ``<prefix>.events.<id>.log``.

Raw (stream, bytes) frames go in (from ``DockerEngine.follow_output``); they are split into
lines (a line may span frames; UTF-8 is decoded incrementally, bad bytes replaced),
timestamped, and published in chunks: one every ``flush_interval_s`` or as soon as
``flush_bytes`` are waiting, whichever comes first. Chunks are numbered by ``seq`` from 0 and
published with a ``Nats-Msg-Id``, so a retried publish is stored once.

Output past ``max_bytes`` is not published: the chunk that reaches the limit ends with the
line ``[faas: log truncated at N bytes]`` and has ``truncated=True``. The caller can still get
the first ``keep_stdout`` bytes of stdout (the command protocol's result) and the last
``keep_stderr`` bytes of stderr (an error's tail), independently of the log limit.
"""

import asyncio
import codecs
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from common.jspub import Publishes
from common.lifecycle import wait_event
from common.logs import fields
from node_agent.containers.docker import STDERR, STDOUT
from node_agent.outcome import STDERR_TAIL
from schemas import Layout, LogEntry, Logs, dedup, encode

log = logging.getLogger(__name__)

# Not a Docker stream: the output of a dependency install (containers/deps.py), published as
# lines of the call that waited for it; it counts toward the log limit, not the stderr tail.
INSTALL = 3
_NAMES: dict[int, Literal["stdout", "stderr", "install"]] = {STDOUT: "stdout", STDERR: "stderr", INSTALL: "install"}
# JSON around one line in a chunk (at, stream, keys, quotes): counts toward flush_bytes so that
# a flood of tiny lines cannot build a chunk larger than the stream's message size limit.
_LINE_OVERHEAD = 64


class LogPublisher:
    """``async with LogPublisher(js, layout, id, attempt, max_bytes, number=n) as logs:
    await logs.write(STDOUT, b"...")`` — or ``await logs.consume(engine.follow_output(cid))``.

    ``event_fields`` (function, version, runtime...) are copied into every chunk; ``redact``
    rewrites every line before it is published (a job's secret values masked).
    """

    def __init__(
        self,
        js: Publishes,
        layout: Layout,
        id: str,
        attempt: int,
        max_bytes: int,
        *,
        number: int,
        flush_interval_s: float = 0.1,
        flush_bytes: int = 64 * 1024,
        max_line_chars: int = 16 * 1024,
        keep_stdout: int = 0,
        keep_stderr: int = STDERR_TAIL,
        publish_stdout: bool = True,
        event_fields: dict[str, Any] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        if max_bytes < 0 or flush_interval_s <= 0 or flush_bytes < 1 or max_line_chars < 1:
            raise ValueError("invalid log limits")
        self._js = js
        self._layout = layout
        self.id = id
        self.attempt = attempt
        self.number = number
        self.max_bytes = max_bytes
        self._interval = flush_interval_s
        self._flush_bytes = flush_bytes
        self._max_line = max_line_chars
        self._keep_stdout = keep_stdout
        self._keep_stderr = keep_stderr
        self._publish_stdout = publish_stdout
        self._fields = event_fields or {}
        self._redact = redact
        # made on a stream's first output (most warm calls print nothing)
        self._decoders: dict[int, codecs.IncrementalDecoder] = {}
        self._partial = {s: "" for s in _NAMES}
        self._pending: list[LogEntry] = []
        self._pending_size = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._closed = False
        self._stdout = bytearray()
        self._stderr = bytearray()
        # Bytes taken into the log so far; once it reaches max_bytes the log is cut.
        self.logged_bytes = 0
        self.truncated = False
        self.stdout_truncated = False
        self.seq = 0  # the next chunk's number; also how many chunks were published or dropped
        self.dropped_chunks = 0

    # --- what the caller gets besides the events ---------------------------------------
    @property
    def stdout(self) -> bytes:
        """The first ``keep_stdout`` bytes of stdout (see ``stdout_truncated``)."""
        return bytes(self._stdout)

    @property
    def stderr_tail(self) -> bytes:
        """The last ``keep_stderr`` bytes of stderr."""
        return bytes(self._stderr)

    # --- input ---------------------------------------------------------------------------
    async def write(self, stream: int, data: bytes) -> None:
        """Take one output frame; publishes at once if ``flush_bytes`` are waiting."""
        if self._closed or not data:
            return
        self._keep(stream, data)
        if self.truncated or (stream == STDOUT and not self._publish_stdout):
            return
        room = self.max_bytes - self.logged_bytes
        cut = len(data) > room
        if cut:
            data = data[:room]
        self.logged_bytes += len(data)
        now = datetime.now(UTC)
        decoder = self._decoders.get(stream)
        if decoder is None:
            decoder = self._decoders[stream] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._split(stream, decoder.decode(data), now)
        if cut:
            await self._truncate(now)
        elif self._pending_size >= self._flush_bytes:
            await self.flush()
        elif self._pending and (self._timer is None or self._timer.done()):
            self._timer = asyncio.create_task(self._flush_later(), name=f"logs:{self.id}:flush")

    async def consume(self, frames: AsyncIterator[tuple[int, bytes]]) -> None:
        """Write every frame of ``frames`` (until the container exits). Output is best effort:
        a failing source is logged and ends the log, never the run."""
        try:
            async for stream, data in frames:
                await self.write(stream, data)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("logs.source_failed", exc_info=True, extra=fields(id=self.id, attempt=self.attempt))

    async def flush(self) -> None:
        """Publish the complete lines waiting (partial lines wait for their end or ``close``)."""
        async with self._lock:
            await self._publish(truncated=False)

    async def close(self) -> None:
        """End the log: partial lines become lines, everything waiting is published. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.logged_bytes == 0 and not self.truncated:
            return  # nothing was ever written (most warm calls): nothing to end or publish
        # Wake the timer rather than cancel it: a cancel could land in the middle of a publish
        # and lose the lines it carries.
        self._closing.set()
        if self._timer is not None:
            await asyncio.gather(self._timer, return_exceptions=True)
        if not self.truncated:
            self._end_partials(datetime.now(UTC))
        async with self._lock:
            await self._publish(truncated=False)

    async def __aenter__(self) -> "LogPublisher":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- internals -------------------------------------------------------------------------
    def _keep(self, stream: int, data: bytes) -> None:
        if stream == STDOUT:
            room = self._keep_stdout - len(self._stdout)
            if len(data) > room:
                self.stdout_truncated = True
            if room > 0:
                self._stdout += data[:room]
        elif stream == STDERR and self._keep_stderr > 0:
            self._stderr += data
            if len(self._stderr) > self._keep_stderr:
                del self._stderr[: len(self._stderr) - self._keep_stderr]

    def _split(self, stream: int, text: str, at: datetime) -> None:
        *complete, rest = (self._partial[stream] + text).split("\n")
        for line in complete:
            self._add(stream, line.removesuffix("\r"), at)
        # A line without an end in sight is published in pieces, so memory stays bounded.
        while len(rest) >= self._max_line:
            self._add(stream, rest[: self._max_line], at)
            rest = rest[self._max_line :]
        self._partial[stream] = rest

    def _end_partials(self, at: datetime) -> None:
        for stream, decoder in self._decoders.items():
            rest = self._partial[stream] + decoder.decode(b"", final=True)
            self._partial[stream] = ""
            if rest:
                self._add(stream, rest.removesuffix("\r"), at)

    def _add(self, stream: int, text: str, at: datetime) -> None:
        if self._redact is not None:
            text = self._redact(text)
        self._pending.append(LogEntry(at=at, stream=_NAMES[stream], text=text))
        self._pending_size += len(text) + _LINE_OVERHEAD

    async def _truncate(self, at: datetime) -> None:
        self.truncated = True
        self._end_partials(at)
        self._add(STDERR, f"[faas: log truncated at {self.max_bytes} bytes]", at)
        async with self._lock:
            await self._publish(truncated=True)

    async def _flush_later(self) -> None:
        if await wait_event(self._closing, self._interval):
            return  # close() publishes everything in one last chunk
        await self.flush()

    async def _publish(self, truncated: bool) -> None:
        """One chunk with everything pending; the caller holds the lock, so chunks keep order."""
        if not self._pending and not truncated:
            return
        lines, self._pending, self._pending_size = self._pending, [], 0
        seq, self.seq = self.seq, self.seq + 1
        event = Logs(
            **self._fields,
            call_id=self.id,
            number=self.number,
            attempt=self.attempt,
            seq=seq,
            lines=lines,
            truncated=truncated,
        )
        try:
            await self._js.publish(
                self._layout.event(self.id, "log"),
                encode(event),
                stream=self._layout.events_stream,
                headers=dedup.header(dedup.log_chunk(self.id, self.attempt, seq)),
            )
        except Exception as err:
            # Logs are best effort: a lost chunk leaves a gap in seq, the run goes on.
            self.dropped_chunks += 1
            log.warning(
                "logs.publish_failed",
                extra=fields(id=self.id, attempt=self.attempt, seq=seq, lines=len(lines), error=repr(err)),
            )
