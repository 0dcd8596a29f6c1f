"""Checks 2 and 7: what the NATS cluster says about its streams, and whom it refuses.

2: every stream, KV bucket (``KV_*``) and the object store (``OBJ_*``) has 3 replicas.
7: a client without credentials, with a wrong password, or speaking plain text (no TLS, even
with the right password) is refused by every server.
"""

import asyncio
import json
import ssl

import nats
import nats.errors

from common.natsauth import layout_streams
from schemas import Layout
from tests.deploy.deployment import Deployment, Result


async def replicas(d: Deployment) -> Result:
    # Each stream of the layout asked for by name (a STREAM.LIST may leave out a stream whose
    # leader is being elected), each for up to 10 s; then any other stream the cluster lists.
    found: dict[str, int] = {}
    unanswered: list[str] = []
    async with d.nats_admin() as nc:
        js = nc.jetstream()
        for name in layout_streams(Layout()):
            for attempt in range(10):
                try:
                    found[name] = (await js.stream_info(name)).config.num_replicas or 1
                    break
                except nats.errors.Error:
                    if attempt == 9:
                        unanswered.append(name)
                    await asyncio.sleep(1)
        for si in await js.streams_info():
            found.setdefault(str(si.config.name), si.config.num_replicas or 1)
    short = [f"{name} R{n}" for name, n in sorted(found.items()) if n < 3]
    kinds = {
        "streams": sum(1 for n in found if not n.startswith(("KV_", "OBJ_"))),
        "kv": sum(1 for n in found if n.startswith("KV_")),
        "obj": sum(1 for n in found if n.startswith("OBJ_")),
    }
    figures = f"{kinds['streams']} streams, {kinds['kv']} KV buckets, {kinds['obj']} object stores: " + (
        "all R3" if not short else "below 3: " + ", ".join(short)
    )
    if unanswered:
        figures = f"no answer for {unanswered}; {figures}"
    return Result(2, "", not short and not unanswered, figures)


async def _quiet(err: Exception) -> None:
    """The refusals are expected: not logged with a traceback by nats-py's default callback."""


async def _refused(connect: "asyncio.Future[object] | object") -> str:
    """'' if the connection was accepted (a failure of the check), else the server's reason."""
    try:
        nc = await connect  # type: ignore[misc]
    except Exception as err:
        return f"{type(err).__name__}: {err}"[:120] or type(err).__name__
    await nc.close()
    return ""


async def _plaintext(host: str, user: str, password: str) -> str:
    """Speak the NATS protocol without TLS: INFO, CONNECT with a valid password, PING."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, 4222), 5)
    try:
        info = json.loads((await asyncio.wait_for(reader.readline(), 5)).decode().removeprefix("INFO "))
        connect = {"user": user, "pass": password, "verbose": False, "pedantic": False, "protocol": 1}
        writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        await writer.drain()
        answer = (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    except (TimeoutError, ConnectionError) as err:
        answer = repr(err)
    finally:
        writer.close()
    if answer == "PONG":
        return ""
    return f"tls_required={info.get('tls_required')} answer={answer or 'closed'}"


async def refusals(d: Deployment) -> Result:
    problems: list[str] = []
    reasons: list[str] = []
    ctx: ssl.SSLContext = d.tls_context()
    for host in d.hosts.in_group("nats"):
        url = f"tls://{host.address}:4222"
        opts = {"allow_reconnect": False, "connect_timeout": 5, "max_reconnect_attempts": 0, "error_cb": _quiet}
        cases = {
            "no credentials": nats.connect([url], tls=ctx, **opts),
            "wrong password": nats.connect([url], tls=ctx, user="admin", password="guess" * 8, **opts),
        }
        for what, attempt in cases.items():
            reason = await _refused(attempt)
            (reasons if reason else problems).append(f"{host.name} {what}: {reason or 'ACCEPTED'}")
        plain = await _plaintext(host.address, "admin", d.password("admin"))
        (reasons if plain else problems).append(f"{host.name} no TLS: {plain or 'ACCEPTED'}")
    # The right credentials over TLS are accepted (the refusals above are not a dead cluster).
    accepted = await _refused(nats.connect(d.nats_urls(), tls=ctx, user="admin", password=d.password("admin")))
    if accepted == "":
        reasons.append("admin over TLS: accepted")
    else:
        problems.append(f"admin over TLS refused: {accepted}")
    return Result(7, "", not problems, "; ".join(problems or [*reasons[:3], f"{len(reasons)} cases as expected"]))
