"""The deployed platform as a client sees it: gateways with their tokens, NATS as admin.

Owns the HTTP helpers the checks share (register a runtime, upload a function, invoke, wait
for records) and the admin NATS connection (TLS, the CA and password the playbook made in
``faas_secrets_dir``), and the :class:`Result` a check returns.
"""

import asyncio
import io
import json
import ssl
import time
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.aio.client import Client

from tests.deploy.hosts import Host, Hosts

PY_RUNTIME = {
    "image": "faas-python",
    "path": "/app",
    "dependencies": "pip install -r requirements.txt",
    "run": "python3 test.py",
}
DICE = {
    "test.py": (
        "import json, random, sys, time\n"
        "params = json.load(sys.stdin)\n"
        "count, sides = params.get('roll', '1d6').split('d')\n"
        "print('rolling', params, file=sys.stderr)\n"
        "time.sleep(float(params.get('sleep', 0)))\n"
        "print(json.dumps([random.randint(1, int(sides)) for _ in range(int(count))]))\n"
    ),
    "requirements.txt": "# no dependencies\n",
}
GATEWAY_PORT = 8080
TOKEN_FILE = "/var/lib/faas/gateway/admin.token"
FINAL = ("DONE", "ERROR", "TIMEOUT", "CANCELLED")


@dataclass
class Result:
    """One check's line: PASS or FAIL, and its figures."""

    number: int
    name: str
    ok: bool
    figures: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.number}. {self.name} ({self.seconds:.0f} s): {self.figures}"


def zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@dataclass
class Deployment:
    """What the checks act on: the hosts, and where the controller keeps the secrets."""

    hosts: Hosts
    secrets: Path
    inventory: Path
    source: Path
    work: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def gateways(self) -> list[Host]:
        return self.hosts.in_group("gateway")

    @property
    def agents(self) -> list[Host]:
        return self.hosts.in_group("agents")

    def read_tokens(self) -> None:
        """Each gateway's admin token, as the operator reads it (`sudo cat` on the host)."""
        for gw in self.gateways:
            self.tokens[gw.name] = self.hosts.exec(gw, "cat", TOKEN_FILE)

    @asynccontextmanager
    async def http(self, gw: Host, timeout_s: float = 60) -> AsyncIterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession(
            f"http://{gw.address}:{GATEWAY_PORT}",
            headers={"Authorization": f"Bearer {self.tokens[gw.name]}"},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as session:
            yield session

    async def wait_healthy(self, timeout_s: float = 90) -> None:
        """Until every gateway answers /healthz with 200 (after a host was started again)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for gw in self.gateways:
                deadline = time.monotonic() + timeout_s
                last = "no answer"
                while True:
                    try:
                        async with http.get(f"http://{gw.address}:{GATEWAY_PORT}/healthz") as resp:
                            if resp.status == 200:
                                break
                            last = f"{resp.status} {(await resp.text())[:200]}"
                    except (aiohttp.ClientError, TimeoutError) as err:
                        last = repr(err)
                    if time.monotonic() > deadline:
                        raise AssertionError(f"gateway {gw.name} not healthy after {timeout_s:.0f} s: {last}")
                    await asyncio.sleep(0.5)

    def nats_urls(self, scheme: str = "tls") -> list[str]:
        return [f"{scheme}://{h.address}:4222" for h in self.hosts.in_group("nats")]

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.secrets / "tls" / "ca.pem"))

    def password(self, user: str) -> str:
        return (self.secrets / "nats" / f"{user}.password").read_text().strip()

    @asynccontextmanager
    async def nats_admin(self) -> AsyncIterator[Client]:
        nc = await nats.connect(
            self.nats_urls(),
            user="admin",
            password=self.password("admin"),
            tls=self.tls_context(),
            inbox_prefix=b"_INBOX.admin",
            connect_timeout=5,
            max_reconnect_attempts=-1,
        )
        try:
            yield nc
        finally:
            await nc.close()


async def register_dice(http: aiohttp.ClientSession, runtime: str, function: str) -> None:
    async with http.post("/v1/runtimes", json={**PY_RUNTIME, "name": runtime}) as resp:
        if resp.status not in (201, 409):
            raise AssertionError(f"register runtime: {resp.status} {await resp.text()}")
    form = aiohttp.FormData()
    form.add_field("name", function)
    form.add_field("runtime", runtime)
    form.add_field("module", zip_bytes(DICE), filename="dice.zip")
    async with http.post("/v1/functions", data=form) as resp:
        if resp.status != 201:
            raise AssertionError(f"upload function: {resp.status} {await resp.text()}")


async def invoke_async(
    http: aiohttp.ClientSession, function: str, params: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """POST .../invoke?async=true: (status, body); status 0 when the request itself failed."""
    try:
        async with http.post(f"/v1/functions/{function}/invoke?async=true", json=params) as resp:
            text = await resp.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = {"text": text[:200]}
            return resp.status, body
    except (aiohttp.ClientError, TimeoutError) as err:
        return 0, {"error": repr(err)}


async def get_call(http: aiohttp.ClientSession, key: str) -> dict[str, Any] | None:
    try:
        async with http.get(f"/v1/calls/{key}") as resp:
            if resp.status != 200:
                return None
            body: dict[str, Any] = await resp.json()
            return body
    except (aiohttp.ClientError, TimeoutError):
        return None


async def wait_done(
    http: aiohttp.ClientSession, ids: list[str], timeout_s: float
) -> tuple[dict[str, dict[str, Any]], float]:
    """Poll each call's record until it is final (DONE, ERROR, TIMEOUT, CANCELLED) or the time is up.

    Returns the last record seen per id (missing: never seen) and the seconds it took."""
    t0 = time.monotonic()
    records: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    while pending and time.monotonic() - t0 < timeout_s:
        found = await asyncio.gather(*(get_call(http, i) for i in pending[:50]))
        for i, rec in zip(pending[:50], found, strict=True):
            if rec is not None:
                records[i] = rec
        pending = [i for i in pending if records.get(i, {}).get("status") not in FINAL]
        if pending:
            await asyncio.sleep(1)
    return records, time.monotonic() - t0
