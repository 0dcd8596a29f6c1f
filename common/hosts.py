"""Listen addresses and Host names: which are loopback, which are IP literals."""

import functools
import ipaddress

LOOPBACK_NAMES = frozenset({"localhost"})


@functools.lru_cache(maxsize=512)
def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address (``[::1]`` too), None if it is a name."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """A listen address that only this machine can reach: 127.0.0.0/8, ::1 or ``localhost``.
    Not ``0.0.0.0``, ``::`` or ``""`` (every interface), not a name that merely resolves to
    loopback today."""
    host = host.strip().lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    ip = ip_literal(host)
    return ip is not None and ip.is_loopback
