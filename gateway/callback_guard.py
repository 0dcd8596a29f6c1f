"""Where a callback may go: public addresses only, checked when the call is made and again
for every connection.

A callback URL is refused (400 at invoke time; a failed ``callback`` outcome at delivery)
when its host is, or resolves to, an address that is unspecified, loopback, link-local
(169.254.0.0/16 with the cloud metadata service, fe80::/10), private (RFC 1918, fc00::/7),
carrier-grade NAT (100.64.0.0/10), multicast, otherwise not publicly routable (reserved,
documentation, benchmarking...), or one of the platform's own (this host's addresses, the
NATS servers', ``callback_deny_networks``). IPv6 forms that carry an IPv4 address
(``::ffff:127.0.0.1``, NAT64 ``64:ff9b::/96``, 6to4, Teredo) are judged by that address too;
numeric IPv4 forms (``2130706433``, ``0x7f.1``, ``127.1``) by the address they stand for.
An operator lets chosen networks through with ``callback_allow_networks``.

Between the check and the POST a name may resolve to something else (DNS rebinding), so the
dispatcher's connections go through :class:`GuardedResolver`, which resolves again and hands
aiohttp only the addresses that pass: a refused address is never connected to.
"""

import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class CallbackRefused(OSError):
    """A callback host that has no address a callback may go to (raised by the resolver, so
    that aiohttp gives up on the connection; never retried)."""


def parse_host(host: str) -> IPAddress | None:
    """The address an IP-literal host stands for, in any form the C library accepts
    (``[::1]``, ``fe80::1%eth0``, ``2130706433``, ``0x7f.0.0.1``, ``017700000001``); None for a name."""
    bare = host.strip("[]")
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(bare.split("%", 1)[0])
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    return None


def address_class(addr: IPAddress) -> str | None:
    """Why no callback may go to ``addr`` by the address rules alone (None: public)."""
    if isinstance(addr, ipaddress.IPv6Address) and (inner := _embedded_ipv4(addr)) is not None:
        reason = address_class(inner)
        if reason is not None or addr.ipv4_mapped is not None or addr in _NAT64:
            # mapped and NAT64 addresses are the IPv4 address itself; 6to4/Teredo are also IPv6
            return f"{reason} (as {inner})" if reason else None
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if any(addr in net for net in _PRIVATE):
        return "private"
    if addr in _CGNAT:
        return "carrier-grade NAT"
    if addr.is_multicast:
        return "multicast"
    if addr.is_reserved or not addr.is_global:
        return "not publicly routable"
    return None


class CallbackGuard:
    """The rules with this gateway's settings: ``allow`` networks pass whatever they are;
    ``deny`` networks and ``own`` addresses (the platform's) are refused like internal ones."""

    def __init__(
        self,
        allow: Sequence[IPNetwork] = (),
        deny: Sequence[IPNetwork] = (),
        own: Iterable[IPAddress] = (),
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.allow = list(allow)
        self.deny = list(deny)
        self.own = set(own)
        self._resolver = resolver

    @property
    def resolver(self) -> AbstractResolver:
        """What names are resolved with (the system's ``getaddrinfo`` unless one was given)."""
        if self._resolver is None:
            self._resolver = ThreadedResolver()
        return self._resolver

    def refusal(self, addr: IPAddress) -> str | None:
        """Why no callback may go to ``addr`` here (None: it may)."""
        candidates = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and (inner := _embedded_ipv4(addr)) is not None:
            candidates.append(inner)
        if any(a in net for a in candidates for net in self.allow if a.version == net.version):
            return None
        if reason := address_class(addr):
            return reason
        if any(a in self.own for a in candidates):
            return "one of the platform's own addresses"
        if any(a in net for a in candidates for net in self.deny if a.version == net.version):
            return "in a denied network (callback_deny_networks)"
        return None

    def literal_refusal(self, host: str) -> str | None:
        """For an IP-literal host (which aiohttp connects to without resolving): why not."""
        addr = parse_host(host)
        if addr is None:
            return None
        reason = self.refusal(addr)
        return f"{host} is {reason}" if reason else None

    async def check_url(self, url: str) -> str | None:
        """Invoke time: why ``url``'s host cannot get a callback (None: it can). A name is
        resolved, and every address it has must pass."""
        host = urlsplit(url).hostname or ""
        if parse_host(host) is not None:
            return self.literal_refusal(host)
        try:
            found = await self.resolver.resolve(host, 0, socket.AF_UNSPEC)
        except OSError as err:
            return f"host {host!r} does not resolve ({err.strerror or err})"
        # The addresses themselves are not told: the caller learns nothing of internal names.
        for result in found:
            addr = parse_host(result["host"])
            reason = "not an IP address" if addr is None else self.refusal(addr)
            if reason:
                return f"host {host!r} resolves to an address a callback may not go to ({reason})"
        return None if found else f"host {host!r} has no address"


class GuardedResolver(AbstractResolver):
    """The dispatcher's resolver: only the addresses that pass ``guard`` reach aiohttp; a host
    with none fails the connection with :class:`CallbackRefused`."""

    def __init__(self, guard: CallbackGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._guard.resolver.resolve(host, port, family)
        passed, reasons = [], set()
        for result in found:
            addr = parse_host(result["host"])
            reason = "not an IP address" if addr is None else self._guard.refusal(addr)
            if reason:
                reasons.add(reason)
            else:
                passed.append(result)
        if not passed:
            why = ", ".join(sorted(reasons)) or "no address"
            raise CallbackRefused(f"every address of {host!r} is one a callback may not go to ({why})")
        return passed

    async def close(self) -> None:
        await self._guard.resolver.close()


def own_addresses(extra_hosts: Iterable[str] = ()) -> set[IPAddress]:
    """This host's addresses (its interfaces' and its name's), and those ``extra_hosts`` (the
    NATS servers, the bind address) resolve to. Best effort: what cannot be read is skipped."""
    found: set[IPAddress] = set()
    names = {socket.gethostname(), socket.getfqdn(), *extra_hosts}
    for name in names:
        if not name:
            continue
        with contextlib.suppress(OSError, UnicodeError):
            for *_, sockaddr in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP):
                if (addr := parse_host(str(sockaddr[0]))) is not None:
                    found.add(addr)
    found |= _interface_addresses()
    return {a for a in found if not a.is_unspecified}


def _interface_addresses() -> set[IPAddress]:
    """Linux: every local IPv4 address (``/proc/net/fib_trie``, the "/32 host LOCAL" entries)
    and IPv6 address (``/proc/net/if_inet6``)."""
    found: set[IPAddress] = set()
    with contextlib.suppress(OSError, ValueError):
        last = None
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|--"):
                last = text[3:].strip()
            elif "/32 host LOCAL" in text and last:
                found.add(ipaddress.IPv4Address(last))
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            if parts := line.split():
                found.add(ipaddress.IPv6Address(int(parts[0], 16)))
    return found
