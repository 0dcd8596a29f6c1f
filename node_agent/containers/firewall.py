"""The host firewall of the sealed network, the one containers with network access join.

Docker puts those containers on a bridge of their own (``faas-fn``, interface ``faasfn0``,
containers unable to reach each other: ``enable_icc=false``; docker.py makes it). This module
keeps everything but the outside world out of their reach with iptables rules in two chains
of its own, each jumped to by the first rule of its hook:

* ``FAAS-FN-IN`` (from ``INPUT``, packets from the bridge to the host itself, whatever host
  address they name: NATS, the gateway, the store, a Docker API on TCP, sshd...): rejected,
  except replies on connections the host opened and the operator's allow-list.
* ``FAAS-FN-OUT`` (from ``DOCKER-USER``, Docker's hook at the top of ``FORWARD``; ``FORWARD``
  itself where Docker manages no iptables): rejected to loopback, private (10/8, 172.16/12,
  192.168/16), shared (100.64/10), link-local (169.254/16: the cloud metadata service),
  multicast and reserved ranges, the host's directly connected subnets (its neighbours: other
  platform hosts) and the deny-list (the platform's own addresses, e.g. the NATS servers);
  except the allow-list and DNS (port 53) to the host's resolvers, which Docker's embedded
  DNS server queries from inside the container's network namespace.
* IPv6: the network has none, so everything from the bridge is rejected, in and forwarded.

Rejected, not dropped: a connection fails at once with "No route to host" (ICMP
administratively prohibited) instead of hanging until its timeout.

:func:`apply` is idempotent and cheap when nothing changed: it reads the chains and the hooks'
first rules, and only if they differ from what they should be replaces the chains atomically
(``iptables-restore --noflush``) and puts each jump first (inserted before the stale ones are
deleted, so the rules never lapse). It needs ``CAP_NET_ADMIN``: root, or the capability
granted to the agent's service (deploy/ansible gives it).
"""

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from common.logs import fields
from node_agent.errors import NetworkUnavailable

log = logging.getLogger(__name__)

IN_CHAIN, OUT_CHAIN = "FAAS-FN-IN", "FAAS-FN-OUT"
# Never reachable from the sealed network (besides the host's own subnets and the deny-list).
BLOCKED = tuple(
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT, some clouds' internals)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local: 169.254.169.254, the cloud metadata service
        "172.16.0.0/12",  # private (Docker's own networks among them)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
_REJECT4 = "-j REJECT --reject-with icmp-admin-prohibited"
_REJECT6 = "-j REJECT --reject-with icmp6-adm-prohibited"
_RESOLV_CONFS = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))


class SealError(NetworkUnavailable):
    """The rules could not be applied."""


@dataclass(frozen=True)
class Allowed:
    """A destination the sealed network may reach: a network, optionally one port (TCP and UDP)."""

    network: IPv4Network
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> "Allowed":
        """``"10.0.0.5"``, ``"10.0.0.0/24"`` or ``"10.0.0.5/32:3128"``."""
        addr, _, port = entry.strip().partition(":") if entry.count(":") == 1 else (entry.strip(), "", "")
        try:
            network = ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IPv4 address or network, optionally with :port") from None
        if not isinstance(network, IPv4Network):
            raise ValueError(f"{entry!r}: only IPv4 destinations can be allowed (the network has no IPv6)")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{entry!r}: the port must be 1-65535")
        return cls(network, int(port) if port else None)

    def rules(self, chain: str) -> list[str]:
        if self.port is None:
            return [f"-A {chain} -d {self.network} -j RETURN"]
        return [f"-A {chain} -d {self.network} -p {p} -m {p} --dport {self.port} -j RETURN" for p in ("tcp", "udp")]


@dataclass(frozen=True)
class SealConfig:
    """The sealed network and its exceptions (``FAAS_AGENT_NETWORK_*``)."""

    network: str = "faas-fn"
    bridge: str = "faasfn0"
    allow: tuple[Allowed, ...] = ()
    # Networks, addresses or host names (resolved when the rules are applied) refused besides
    # BLOCKED and the host's subnets: the platform's own public addresses.
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostFacts:
    """What the rules depend on besides the settings."""

    resolvers: tuple[IPv4Address, ...] = ()
    subnets: tuple[IPv4Network, ...] = ()
    denied: tuple[IPv4Network, ...] = ()
    ipv6: bool = False
    notes: list[str] = field(default_factory=list, compare=False)


def ruleset4(config: SealConfig, facts: HostFacts) -> dict[str, list[str]]:
    """The rules of each chain (``iptables -S`` form), for IPv4."""
    inbound = [f"-A {IN_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    outbound: list[str] = []
    for allowed in config.allow:
        inbound += allowed.rules(IN_CHAIN)
        outbound += allowed.rules(OUT_CHAIN)
    inbound.append(f"-A {IN_CHAIN} {_REJECT4}")
    for resolver in facts.resolvers:
        outbound += [f"-A {OUT_CHAIN} -d {resolver}/32 -p {p} -m {p} --dport 53 -j RETURN" for p in ("udp", "tcp")]
    for network in _unique((*BLOCKED, *facts.subnets, *facts.denied)):
        outbound.append(f"-A {OUT_CHAIN} -d {network} {_REJECT4}")
    return {IN_CHAIN: inbound, OUT_CHAIN: outbound}


def ruleset6() -> dict[str, list[str]]:
    return {
        IN_CHAIN: [f"-A {IN_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN", f"-A {IN_CHAIN} {_REJECT6}"],
        OUT_CHAIN: [f"-A {OUT_CHAIN} {_REJECT6}"],
    }


def restore_input(chains: dict[str, list[str]]) -> str:
    """``iptables-restore --noflush`` input replacing these chains (and only these) at once."""
    lines = ["*filter", *(f":{chain} - [0:0]" for chain in chains)]
    for rules in chains.values():
        lines += rules
    return "\n".join([*lines, "COMMIT", ""])


def _unique(networks: Iterable[IPv4Network]) -> Iterator[IPv4Network]:
    """Without networks another one in the list already covers."""
    kept: list[IPv4Network] = []
    for n in networks:
        if not any(n.subnet_of(k) for k in kept):
            kept = [k for k in kept if not k.subnet_of(n)] + [n]
    return iter(kept)


# --- what the host looks like ---------------------------------------------------------------
def resolvers(paths: Iterable[Path] = _RESOLV_CONFS) -> tuple[IPv4Address, ...]:
    """The IPv4 name servers Docker's embedded DNS forwards to (not loopback ones: those it
    queries from the host's own namespace)."""
    found: list[IPv4Address] = []
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    with contextlib.suppress(ValueError):
                        addr = IPv4Address(words[1])
                        if not addr.is_loopback and addr not in found:
                            found.append(addr)
    return tuple(found)


def connected_subnets(route_table: str) -> tuple[IPv4Network, ...]:
    """Directly connected IPv4 subnets (no gateway) from ``/proc/net/route``, but the
    default route."""
    subnets: list[IPv4Network] = []
    for line in route_table.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        dest, gateway, mask = (int(c, 16) for c in (cols[1], cols[2], cols[7]))
        if gateway or not mask:
            continue
        net = IPv4Network(f"{_route_ip(dest)}/{_route_ip(mask)}", strict=False)
        if net not in subnets:
            subnets.append(net)
    return tuple(subnets)


def _route_ip(value: int) -> IPv4Address:
    """/proc/net/route prints an address as the number it is in memory (network byte order)."""
    return IPv4Address(socket.ntohl(value))


def deny_networks(entries: Iterable[str]) -> tuple[tuple[IPv4Network, ...], list[str]]:
    """The deny-list as networks (host names resolved to their IPv4 addresses), and notes on
    the entries that could not be used."""
    out: list[IPv4Network] = []
    notes: list[str] = []
    for entry in entries:
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            try:
                infos = socket.getaddrinfo(entry, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
            except OSError as err:
                notes.append(f"deny entry {entry!r} does not resolve: {err}")
                continue
            out += [IPv4Network(info[4][0]) for info in infos]
            continue
        if isinstance(net, IPv4Network):
            out.append(net)
    return tuple(out), notes


def host_facts(config: SealConfig) -> HostFacts:
    """Reads the host (files and DNS): blocking, for a thread."""
    try:
        subnets = connected_subnets(Path("/proc/net/route").read_text())
    except OSError:
        subnets = ()
    denied, notes = deny_networks(config.deny)
    return HostFacts(
        resolvers=resolvers(),
        subnets=subnets,
        denied=denied,
        ipv6=Path("/proc/net/if_inet6").exists(),
        notes=notes,
    )


# --- applying -------------------------------------------------------------------------------
class _Iptables:
    """One iptables family's commands (iptables or ip6tables)."""

    def __init__(self, family: str) -> None:
        self.cmd = family
        if shutil.which(family) is None or shutil.which(f"{family}-restore") is None:
            raise SealError(f"{family} is not installed on this host")

    async def run(self, *args: str, stdin: str | None = None, check: bool = True) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        code = proc.returncode or 0
        if check and code != 0:
            raise SealError(f"{' '.join(args[:3])} failed: {err.decode(errors='replace').strip() or f'exit {code}'}")
        return code, out.decode()

    async def rules(self, chain: str) -> list[str] | None:
        """The ``-A`` lines of a chain; None if it does not exist."""
        code, out = await self.run(self.cmd, "-w", "-S", chain, check=False)
        if code != 0:
            return None
        return [line for line in out.splitlines() if line.startswith("-A ")]

    async def ensure(self, chains: dict[str, list[str]], hooks: dict[str, str]) -> bool:
        """The chains as given, each jumped to by the first rule of its hook; True if anything
        had to change."""
        changed = False
        for chain, want in chains.items():
            if await self.rules(chain) != want:
                await self.run(f"{self.cmd}-restore", "-w", "--noflush", stdin=restore_input(chains))
                changed = True
                break
        for hook, jump in hooks.items():
            changed |= await self._first(hook, jump)
        return changed

    async def _first(self, hook: str, jump: str) -> bool:
        rule = f"-A {hook} {jump}"
        current = await self.rules(hook)
        if current is None:
            raise SealError(f"{self.cmd}: no chain {hook}")
        if current[:1] == [rule] and current.count(rule) == 1:
            return False
        await self.run(self.cmd, "-w", "-I", hook, "1", *jump.split())
        # the stale copies, from the last (rule numbers start at 1; ours is 1 now)
        again = await self.rules(hook) or []
        for number in sorted((i + 1 for i, r in enumerate(again) if r == rule and i > 0), reverse=True):
            await self.run(self.cmd, "-w", "-D", hook, str(number))
        return True


@contextlib.asynccontextmanager
async def _host_lock() -> AsyncIterator[None]:
    """One agent at a time applies the rules on a host (several may start at once)."""
    path = Path(tempfile.gettempdir()) / "faas-network-seal.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


async def apply(config: SealConfig) -> bool:
    """Make the host's rules what ``config`` says; True if they had to change (first start,
    or something removed them). Raises :class:`SealError` if they cannot be applied."""
    facts = await asyncio.to_thread(host_facts, config)
    for note in facts.notes:
        log.warning("network.seal_note", extra=fields(note=note))
    jump_in = f"-i {config.bridge} -j {IN_CHAIN}"
    jump_out = f"-i {config.bridge} -j {OUT_CHAIN}"
    async with _host_lock():
        v4 = _Iptables("iptables")
        forward = "DOCKER-USER" if await v4.rules("DOCKER-USER") is not None else "FORWARD"
        changed = await v4.ensure(ruleset4(config, facts), {"INPUT": jump_in, forward: jump_out})
        if facts.ipv6:
            v6 = _Iptables("ip6tables")
            changed |= await v6.ensure(ruleset6(), {"INPUT": jump_in, "FORWARD": jump_out})
    return changed
