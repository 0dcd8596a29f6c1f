"""A small HTTP client of the gateway's /v1 API, for the CLI."""

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import aiohttp


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

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(headers=self._headers) as http,
            http.request(method, self.base + path, **kw) as resp,
        ):
            text = await resp.text()
            body = json.loads(text) if text and resp.content_type == "application/json" else text
            if resp.status >= 400:
                msg = body.get("error", {}).get("message", text) if isinstance(body, dict) else text
                if resp.status == 401:
                    msg += f" (token used: {self.token_source}; pass --token or set FAAS_TOKEN)"
                raise GatewayError(resp.status, msg)
            return resp.status, body

    async def register_runtime(self, spec: dict[str, Any]) -> Any:
        return (await self.request("POST", "/v1/runtimes", json=spec))[1]

    async def deploy(
        self, name: str, runtime: str, path: Path, limits: dict[str, Any] | None, handler: str | None = None
    ) -> Any:
        data, filename = pack(path)
        form = aiohttp.FormData()
        form.add_field("name", name)
        form.add_field("runtime", runtime)
        if limits:
            form.add_field("limits", json.dumps(limits))
        if handler:
            form.add_field("handler", handler)
        form.add_field("module", data, filename=filename, content_type="application/octet-stream")
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
