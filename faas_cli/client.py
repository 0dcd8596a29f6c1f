"""A small HTTP client of the gateway's /v1 API, for the CLI: JSON requests, multipart
uploads with progress, and Server-Sent Events (live logs)."""

import io
import json
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

# Plain requests: the gateway answers within its own bounds (a sync invoke waits at most its
# max_sync_wait_s); connecting may not take long. Streams have no total limit.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=900)
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
# One SSE line holds one log line (at most 16 KiB of text, escaped as JSON).
MAX_SSE_LINE = 1 << 20


class GatewayError(Exception):
    """An error answer of the gateway (``status`` 0: none was asked, e.g. no token to send)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def pack(path: Path) -> tuple[bytes, str]:
    """A directory is zipped (its contents at the archive root); a file is sent as is."""
    if path.is_file():
        return path.read_bytes(), path.name
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a file nor a directory")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(path.rglob("*")):
            rel = f.relative_to(path)
            if any(part in {"__pycache__", "node_modules", ".git"} for part in rel.parts):
                continue
            if f.is_file():
                zf.write(f, str(rel))
    return buf.getvalue(), f"{path.name}.zip"


class CountingReader(io.BytesIO):
    """The archive as aiohttp reads it to send it: ``on_read(bytes_so_far)`` after each
    chunk (aiohttp writes a chunk, waiting for the socket to drain, before it reads the next)."""

    def __init__(self, data: bytes, on_read: Callable[[int], None]) -> None:
        super().__init__(data)
        self._on_read = on_read

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self._on_read(self.tell())
        return chunk


ADMIN_TOKEN_FILE = "admin.token"


def find_token(token: str | None, data_dir: Path) -> tuple[str | None, str]:
    """The token to send and where it came from: ``token`` (``--token`` / ``FAAS_TOKEN``),
    else the admin token ``faas up`` wrote to ``<data_dir>/admin.token``, else none."""
    if token:
        return token.strip(), "--token / FAAS_TOKEN"
    path = data_dir / ADMIN_TOKEN_FILE
    try:
        found = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None, f"none (no --token, no FAAS_TOKEN, no {path})"
    except OSError as err:
        raise GatewayError(0, f"cannot read the admin token in {path}: {err.strerror}") from None
    return (found or None), str(path)


class Client:
    def __init__(self, base_url: str, token: str | None = None, token_source: str = "none") -> None:
        self.base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.token_source = token_source

    async def _raise_for(self, resp: aiohttp.ClientResponse) -> None:
        text = await resp.text()
        try:
            body = json.loads(text) if resp.content_type == "application/json" else text
        except json.JSONDecodeError:
            body = text
        error = body.get("error") if isinstance(body, dict) else None
        msg = str(error.get("message", text)) if isinstance(error, dict) else text.strip() or resp.reason or ""
        if resp.status == 401:
            msg += f" (token used: {self.token_source}; pass --token or set FAAS_TOKEN)"
        raise GatewayError(resp.status, msg)

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(headers=self._headers, timeout=REQUEST_TIMEOUT) as http,
            http.request(method, self.base + path, **kw) as resp,
        ):
            if resp.status >= 400:
                await self._raise_for(resp)
            text = await resp.text()
            body = json.loads(text) if text and resp.content_type == "application/json" else text
            return resp.status, body

    async def get(self, path: str, **params: str) -> Any:
        return (await self.request("GET", path, params=params))[1]

    async def events(self, path: str) -> AsyncIterator[tuple[str, Any]]:
        """The Server-Sent Events of ``path?follow=true``: (event, data) pairs, data parsed
        as JSON, until the server ends the stream."""
        async with (
            aiohttp.ClientSession(headers=self._headers, timeout=STREAM_TIMEOUT) as http,
            http.get(self.base + path, params={"follow": "true"}, headers={"Accept": "text/event-stream"}) as resp,
        ):
            if resp.status >= 400:
                await self._raise_for(resp)
            event = "message"
            data: list[str] = []
            while line_b := await resp.content.readline(max_line_length=MAX_SSE_LINE):
                line = line_b.decode("utf-8", errors="replace").rstrip("\r\n")
                if not line:  # a blank line ends an event
                    if data:
                        yield event, json.loads("\n".join(data))
                    event, data = "message", []
                elif line.startswith(":"):
                    continue  # a comment: the keepalive
                else:
                    key, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if key == "event":
                        event = value
                    elif key == "data":
                        data.append(value)

    async def register_runtime(self, spec: dict[str, Any]) -> Any:
        return (await self.request("POST", "/v1/runtimes", json=spec))[1]

    async def deploy(
        self,
        name: str,
        runtime: str,
        archive: tuple[bytes, str],
        limits: dict[str, Any] | None,
        handler: str | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> Any:
        """Upload ``archive`` (bytes, file name) as a new version of ``name``; ``on_sent``
        hears the bytes sent so far."""
        data, filename = archive
        form = aiohttp.FormData()
        form.add_field("name", name)
        form.add_field("runtime", runtime)
        if limits:
            form.add_field("limits", json.dumps(limits))
        if handler:
            form.add_field("handler", handler)
        module: bytes | io.BytesIO = CountingReader(data, on_sent) if on_sent else data
        form.add_field("module", module, filename=filename, content_type="application/octet-stream")
        return (await self.request("POST", "/v1/functions", data=form))[1]

    async def create_token(self, role: str, name: str | None, expires: dict[str, Any]) -> Any:
        body: dict[str, Any] = {"role": role, **expires}
        if name:
            body["name"] = name
        return (await self.request("POST", "/v1/tokens", json=body))[1]

    async def invoke(self, name: str, params: Any, asynchronous: bool, wait: float | None) -> tuple[int, Any]:
        query: dict[str, str] = {}
        if asynchronous:
            query["async"] = "true"
        if wait is not None:
            query["wait"] = str(wait)
        return await self.request("POST", f"/v1/functions/{name}/invoke", json=params, params=query)


def seg(value: str) -> str:
    """``value`` as one path segment (names and ids are checked by the gateway, not here)."""
    return quote(value, safe="")
