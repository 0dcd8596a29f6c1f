"""Containers cannot reach what they should not, on a real host: from inside a network-enabled
function's container and a job's, run by a node agent that sealed their network with real
iptables rules, connections to the NATS server (listening on every interface), a TCP server on
the host (on every interface, IPv4 and IPv6), the cloud metadata address and private addresses
all fail with "No route to host", and no Docker socket is there; a route to the outside
remains. The same probe from a container on Docker's default bridge does connect to the host:
the probe can tell. Also: a job's container hardening as Docker sees it, and the timeout of a
job that has none."""

import asyncio
import ipaddress
import json
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from nats.aio.client import Client

from common.jetstream import connect, ensure_layout
from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from schemas import CallStatus, JobContainer, JobMessage, JobSpec, JobStarted, JobStatus, Layout, Limits, encode
from tests.e2e.agent_harness import agent_settings, call
from tests.e2e.conftest import wait_until
from tests.e2e.test_jobs import JobEvents, cancel
from tests.functions import PYTHON_IMAGE, python_runtime, register

pytestmark = pytest.mark.e2e

# Prints what it could reach: {"uid", "docker_socket": [paths], "tcp": {"host:port": "connected" |
# errno name | "timeout"}, "public_route": "route" | errno name}. Params: {"tcp": [[host, port]...],
# "public": address}.
PROBE = r"""
import errno, json, os, socket, sys
p = json.loads(sys.argv[1]) if len(sys.argv) > 1 else json.load(sys.stdin)
def tcp(host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, port))
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
def route(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, 53))  # no packet: only asks the kernel for a route
        return "route"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
print(json.dumps({
    "uid": os.getuid(),
    "docker_socket": [f for f in ("/var/run/docker.sock", "/run/docker.sock") if os.path.exists(f)],
    "tcp": {f"{h}:{port}": tcp(h, port) for h, port in p["tcp"]},
    "public_route": route(p["public"]),
}))
"""
PUBLIC = "198.51.100.1"  # a documentation address: only routed, never sent to
UNREACHABLE = ("169.254.169.254", "10.1.2.3", "192.168.1.1", "100.64.0.1", "172.31.255.1")
# Sleeps until stopped, ending at once on SIGTERM (as PID 1, sh ignores it otherwise).
SLEEP = "trap 'exit 0' TERM; sleep 600 & wait"
# A job keeps its container up after the probe, for docker inspect; then it is cancelled.
JOB_SCRIPT = f'python3 -c "$PROBE" "$TARGETS" && echo probed >&2; {SLEEP}'


class HostServer:
    """A TCP server on every interface of the host, IPv4 and IPv6 (one dual-stack socket)."""

    async def __aenter__(self) -> "HostServer":
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        self.port = sock.getsockname()[1]
        self.accepted = 0

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self._server = await asyncio.start_server(on_client, sock=sock)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()


def host_address() -> str:
    """This host's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((PUBLIC, 53))
        return str(s.getsockname()[0])


def link_local(interface: str) -> str | None:
    """The IPv6 link-local address of a host interface, if it has one."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        if cols[-1] == interface and cols[0].startswith("fe80"):
            return ":".join(cols[0][i : i + 4] for i in range(0, 32, 4))
    return None


async def gateway(docker: aiodocker.Docker, network: str) -> str:
    """The host's address on a Docker network (the default bridge's config names no gateway:
    it is the subnet's first address)."""
    config = (await (await docker.networks.get(network)).show())["IPAM"]["Config"][0]
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture
async def open_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A NATS server listening on every interface, as a careless deployment's would."""
    async with NatsServer(tmp_path / "nats", host="0.0.0.0") as server:
        yield server


@pytest.fixture
async def open_nc(open_nats: NatsServer, layout: Layout) -> AsyncIterator[Client]:
    client = await connect(f"nats://127.0.0.1:{open_nats.port}", "test")
    await ensure_layout(client.jetstream(), layout)
    yield client
    await client.drain()


@pytest.fixture
async def agent(
    request: pytest.FixtureRequest,
    docker_ready: None,
    open_nats: NatsServer,
    open_nc: Client,
    layout: Layout,
    tmp_path: Path,
) -> AsyncIterator[NodeAgent]:
    """A node agent with its defaults (the seal on), and the settings of the test's marker
    ``@pytest.mark.agent(...)``."""
    marker = request.node.get_closest_marker("agent")
    url = f"nats://127.0.0.1:{open_nats.port}"
    settings = agent_settings(url, layout, tmp_path / "cache", runtimes=["python"], **(marker.kwargs if marker else {}))
    async with NodeAgent(settings) as a:
        yield a


async def targets(docker: aiodocker.Docker, nats_port: int, server: HostServer) -> list[tuple[str, int]]:
    hosts = [await gateway(docker, "faas-fn"), host_address(), await gateway(docker, "bridge")]
    found = [(h, port) for h in hosts for port in (nats_port, server.port)]
    found += [(addr, 80) for addr in UNREACHABLE]
    if (v6 := link_local("faasfn0")) is not None:
        found.append((f"{v6}%eth0", server.port))
    return found


def assert_sealed(probe: dict[str, Any], targets: list[tuple[str, int]]) -> None:
    for target, result in probe["tcp"].items():
        if target.startswith("fe80"):
            # IPv6: Docker disables it in a container of a network without it (EINVAL); were it
            # on, the seal's IPv6 rules refuse it (EHOSTUNREACH)
            assert result in {"EINVAL", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"}, (target, result)
        else:  # the seal's own answer: ICMP administratively prohibited
            assert result == "EHOSTUNREACH", (target, result)
    assert len(probe["tcp"]) == len(targets)
    assert probe["docker_socket"] == []
    assert probe["public_route"] == "route"


async def test_a_network_function_reaches_nothing_of_the_host_nor_private_or_metadata_addresses(
    agent: NodeAgent, open_nats: NatsServer, open_nc: Client, layout: Layout, docker: aiodocker.Docker
) -> None:
    await register(
        open_nc.jetstream(),
        layout,
        python_runtime(),
        "probe",
        {"main.py": PROBE, "requirements.txt": ""},
        limits=Limits(network=True, timeout_s=120),
    )
    async with HostServer() as server:
        want = await targets(docker, open_nats.port, server)
        done = await call(open_nc, layout, "python", "probe", {"tcp": want, "public": PUBLIC}, timeout=120)
        assert done.status == CallStatus.DONE, done.error
        assert_sealed(done.result, want)
        assert done.result["uid"] == 10001
        assert server.accepted == 0

        # The same probe on Docker's default bridge, unsealed, reaches the host's server.
        control = await _unsealed_probe(docker, [(await gateway(docker, "bridge"), server.port)])
        assert control["tcp"] == {f"{await gateway(docker, 'bridge')}:{server.port}": "connected"}, control
        assert server.accepted == 1


async def _unsealed_probe(docker: aiodocker.Docker, tcp: list[tuple[str, int]]) -> Any:
    config = {
        "Image": PYTHON_IMAGE,
        "Cmd": ["python3", "-c", PROBE, json.dumps({"tcp": tcp, "public": PUBLIC})],
        "Labels": {"faas.test": "isolation"},
        "HostConfig": {"NetworkMode": "bridge"},
    }
    container = await docker.containers.create(config)
    try:
        await container.start()
        await container.wait(timeout=60)
        logs = await container.log(stdout=True)
        return json.loads("".join(logs))
    finally:
        await container.delete(force=True)


@pytest.mark.agent(job_pids=512)
async def test_a_job_is_sealed_and_hardened(
    agent: NodeAgent, open_nats: NatsServer, open_nc: Client, layout: Layout, docker: aiodocker.Docker
) -> None:
    async with HostServer() as server, JobEvents(open_nc, layout) as events:
        want = await targets(docker, open_nats.port, server)
        job_id = await _submit(
            open_nc,
            layout,
            ["sh", "-c", JOB_SCRIPT],
            env={"PROBE": PROBE, "TARGETS": json.dumps({"tcp": want, "public": PUBLIC})},
            memory_mb=300,
            cpus=0.5,
        )
        await wait_until(lambda: events.of(job_id, JobStarted), 60)
        [started] = events.of(job_id, JobStarted)
        info = await docker.containers.container(started.container or "").show()
        await wait_until(lambda: ("stderr", "probed") in events.lines(job_id), 60)
        await cancel(open_nc, layout, job_id)
        done = await events.finished(job_id)
    host = info["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] in (None, [])
    assert "no-new-privileges" in host["SecurityOpt"] and not host["Privileged"]
    assert host["PidsLimit"] == 512
    assert host["Memory"] == host["MemorySwap"] == 300 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert host["NetworkMode"] == "faas-fn" and info["Config"]["User"] == "10001:10001"  # the image's USER
    [line] = [text for stream, text in events.lines(job_id) if stream == "stdout"]
    probe = json.loads(line)
    assert_sealed(probe, want)
    assert probe["uid"] == 10001  # faas-python's USER
    assert server.accepted == 0
    assert done.status == JobStatus.CANCELLED


@pytest.mark.agent(job_max_timeout_s=2)
async def test_a_job_without_timeout_ends_timeout_at_the_nodes_maximum(
    agent: NodeAgent, open_nc: Client, layout: Layout
) -> None:
    async with JobEvents(open_nc, layout) as events:
        job_id = await _submit(open_nc, layout, ["sh", "-c", SLEEP])
        done = await events.finished(job_id, timeout=60)
    assert done.status == JobStatus.TIMEOUT, done
    assert done.result.error == "timed out after 2s (the node's maximum for a job without timeout_s)"


async def _submit(nc: Client, layout: Layout, command: list[str], **container: Any) -> str:
    job_id = "j" + secrets.token_hex(6)
    spec = JobSpec(name="isolation", container=JobContainer(image=PYTHON_IMAGE, command=command, **container))
    message = JobMessage(id=job_id, spec=spec, created_at=datetime.now(UTC))
    await nc.jetstream().publish(
        layout.invoke_job(spec.priority), encode(message), stream=layout.invoke_stream, headers={"Nats-Msg-Id": job_id}
    )
    return job_id
