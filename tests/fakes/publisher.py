"""A JetStream publisher (``common.jspub.Publishes``) that records what it would send."""

from typing import Any

from nats.js.api import PubAck

from schemas import Logs, decode_event


class FakePublisher:
    def __init__(self, stream: str | None = None, log: list[str] | None = None) -> None:
        self.stream = stream  # the stream every publish must name (None: any)
        self.log = log if log is not None else []  # "publish <subject>", shared with other fakes for order
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []
        self.streams: list[str | None] = []
        self.fail = False

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        if self.fail:
            raise ConnectionError("nats down")
        if self.stream is not None:
            assert stream == self.stream
        self.log.append(f"publish {subject}")
        self.sent.append((subject, payload, headers or {}))
        self.streams.append(stream)
        return PubAck(stream=stream or "S", seq=len(self.sent))

    def chunks(self) -> list[Logs]:
        """The ``Logs`` events sent, in order."""
        out = []
        for _, payload, _ in self.sent:
            event = decode_event(payload)
            assert isinstance(event, Logs)
            out.append(event)
        return out

    def texts(self) -> list[tuple[str, str]]:
        """Every log line sent, as (stream, text)."""
        return [(line.stream, line.text) for c in self.chunks() for line in c.lines]
