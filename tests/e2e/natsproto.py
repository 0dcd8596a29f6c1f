"""A raw NATS protocol client over a TCP socket: what the ``nats`` CLI sends for
``nats pub`` and ``nats req``, with no client library involved."""

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    headers: str
    data: bytes

    def json(self) -> Any:
        return json.loads(self.data)


class RawNats:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, user: str | None = None, password: str | None = None) -> "RawNats":
        reader, writer = await asyncio.open_connection(host, port)
        info = await reader.readline()
        assert info.startswith(b"INFO "), info
        conn = cls(reader, writer)
        options: dict[str, Any] = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True}
        options["name"] = "raw"
        if user is not None:
            options.update(user=user, **{"pass": password})
        writer.write(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
        try:
            await conn._expect(b"PONG")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _expect(self, word: bytes) -> None:
        while True:
            line = await self.reader.readline()
            if line.startswith(b"PING"):
                self.writer.write(b"PONG\r\n")
                continue
            assert line.startswith(word), line
            return

    async def pub(self, subject: str, payload: bytes, reply: str | None = None) -> None:
        head = f"PUB {subject} {reply + ' ' if reply else ''}{len(payload)}\r\n".encode()
        self.writer.write(head + payload + b"\r\nPING\r\n")
        await self._expect(b"PONG")

    async def req(self, subject: str, payload: bytes, timeout: float = 60) -> "Reply":
        """Returns the reply's headers (as text) and its body parsed as JSON when it is JSON."""
        inbox = "_INBOX.rawtest"
        self.writer.write(f"SUB {inbox} 1\r\n".encode())
        await self.pub(subject, payload, reply=inbox)
        async with asyncio.timeout(timeout):
            while True:
                line = await self.reader.readline()
                if line.startswith(b"PING"):
                    self.writer.write(b"PONG\r\n")
                    continue
                if line.startswith(b"HMSG "):  # HMSG <subject> <sid> <header bytes> <total bytes>
                    parts = line.split()
                    header_len, total = int(parts[-2]), int(parts[-1])
                    data = await self.reader.readexactly(total + 2)
                    return Reply(data[:header_len].decode(), data[header_len:total])
                if line.startswith(b"MSG "):
                    size = int(line.split()[-1])
                    data = await self.reader.readexactly(size + 2)
                    return Reply("", data[:-2])

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
