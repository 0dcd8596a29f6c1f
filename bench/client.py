"""Calling functions over HTTP (sync invoke) and measuring each call from the client.

The benchmark's client shares the 2 cores with the platform it measures, so calls go through
:class:`Caller`, a minimal HTTP/1.1 keep-alive client (one connection per concurrent caller,
a pre-built request head, Content-Length bodies only): about a tenth of aiohttp's client CPU
per request, which is CPU the platform gets instead. It speaks just enough HTTP for the
gateway's JSON answers; anything else is a client error.
"""

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp


class Caller:
    """``await Caller(host, port, token).post_json(path, body) -> (status, parsed JSON or None)``."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self._host, self._port = host, port
        self._auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body, separators=(",", ":")).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json\r\n{self._auth}"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        while self._idle:
            reader, writer = self._idle.pop()
            try:
                return await self._exchange(reader, writer, request)
            except _Stale:
                # A kept-alive connection the server had closed: no byte of an answer came,
                # so the request goes out again on another (any other error is the call's).
                continue
        return await self._exchange(*await asyncio.open_connection(self._host, self._port), request)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, Any]:
        try:
            writer.write(request)
            try:
                status_line = await reader.readuntil(b"\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError) as err:
                if isinstance(err, ConnectionResetError) or not err.partial:
                    raise _Stale() from err
                raise
            headers = await reader.readuntil(b"\r\n\r\n")
            length, close = _content_length(headers)
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self._idle.append((reader, writer))
        status = int(status_line.split(b" ", 2)[1])
        return status, json.loads(payload) if payload else None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()


class _Stale(ConnectionError):
    """The connection was closed before any answer: the request can go out again."""


def _content_length(headers: bytes) -> tuple[int, bool]:
    length, close = None, False
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length is None:
        raise ValueError("an answer without Content-Length")
    return length, close


Http = aiohttp.ClientSession | Caller


@dataclass
class CallResult:
    function: str
    submitted: float  # wall clock (epoch seconds) when the request was sent
    finished: float  # wall clock when the whole answer was read
    latency_ms: float  # monotonic
    http_status: int
    status: str  # the call's status (DONE, ERROR, ...), or HTTP_<code> / CLIENT_ERROR
    call_id: str | None = None
    number: int | None = None
    container: str | None = None
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "DONE"


async def invoke(http: Http, name: str, params: Any = None, wait_s: float = 120) -> CallResult:
    """``POST /v1/functions/{name}/invoke`` (sync); never raises for a failed call."""
    submitted = time.time()
    t0 = time.perf_counter()
    try:
        if isinstance(http, Caller):
            code, body = await http.post_json(f"/v1/functions/{name}/invoke?wait={wait_s}", params or {})
        else:
            async with http.post(
                f"/v1/functions/{name}/invoke", params={"wait": str(wait_s)}, json=params or {}
            ) as resp:
                body = await resp.json(content_type=None)
                code = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError, asyncio.IncompleteReadError) as err:
        return CallResult(
            name, submitted, time.time(), (time.perf_counter() - t0) * 1000, 0, "CLIENT_ERROR", error=repr(err)
        )
    latency = (time.perf_counter() - t0) * 1000
    body = body if isinstance(body, dict) else {}
    status = body.get("status", f"HTTP_{code}") if code in (200, 202) else f"HTTP_{code}"
    failure = body.get("error")
    return CallResult(
        function=name,
        submitted=submitted,
        finished=time.time(),
        latency_ms=latency,
        http_status=code,
        status=status,
        call_id=body.get("id"),
        number=body.get("number"),
        container=body.get("container"),
        error=_error_text(failure),
        record=body,
    )


def _error_text(failure: Any) -> str | None:
    if isinstance(failure, dict):
        return f"{failure.get('type', '')}: {failure.get('message', '')}"[:300]
    return None if failure is None else str(failure)[:300]


@dataclass
class LoadResult:
    concurrency: int
    calls: list[CallResult]
    wall_s: float

    @property
    def throughput(self) -> float:
        return len(self.calls) / self.wall_s if self.wall_s > 0 else 0.0


async def closed_loop(http: Http, name: str, concurrency: int, max_calls: int, max_s: float) -> LoadResult:
    """``concurrency`` clients, each calling again as soon as its answer arrives, until
    ``max_calls`` calls were sent or ``max_s`` seconds passed."""
    sent = 0
    results: list[CallResult] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s

    async def client() -> None:
        nonlocal sent
        while sent < max_calls and loop.time() < deadline:
            sent += 1
            results.append(await invoke(http, name, {"n": sent}))

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return LoadResult(concurrency, results, time.perf_counter() - t0)


def parse_time(value: Any) -> float | None:
    """An ISO timestamp of a call record as epoch seconds."""
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def phases_ms(call: CallResult) -> dict[str, float] | None:
    """Where one call's time went, from the record's timestamps (one host, one clock):

    * ``gateway_in``: client send -> the gateway's ``created_at`` (HTTP, function and runtime
      lookups in KV);
    * ``queue``: ``created_at`` -> the agent's Started event (publish + ack of the invocation,
      pull delivery, the agent's lookups);
    * ``agent_run``: Started -> Finished (publishing Started, running the call);
    * ``return``: Finished -> the client has the answer (Finished publish, delivery to the
      gateway's watch, the HTTP answer).
    """
    r = call.record
    created, started, finished = (parse_time(r.get(k)) for k in ("created_at", "started_at", "finished_at"))
    if created is None or started is None or finished is None:
        return None
    return {
        "gateway_in": (created - call.submitted) * 1000,
        "queue": (started - created) * 1000,
        "agent_run": (finished - started) * 1000,
        "return": (call.finished - finished) * 1000,
    }
