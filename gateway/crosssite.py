"""What a web page must not be able to make a browser do to the gateway.

A page on another site can make its visitor's browser send requests to a gateway the
visitor can reach (``http://127.0.0.1:8080`` on a laptop running ``faas up --no-auth``):

* by DNS rebinding, a page on ``attacker.example`` whose name then resolves to 127.0.0.1
  reads the gateway's answers as same-origin. Its requests say ``Host: attacker.example``:
  the Host must be one of the gateway's own names (loopback names, an IP literal, which no
  DNS answer can rebind, the bind address, or ``allowed_hosts``).
* a cross-site form or ``fetch`` sends ``Origin: https://attacker.example`` (and, in current
  browsers, ``Sec-Fetch-Site: cross-site``): a request whose Origin is not the gateway's own
  is refused, whatever its method.
* a form can only send ``application/x-www-form-urlencoded``, ``multipart/form-data`` or
  ``text/plain`` without asking first (CORS preflight, which the gateway never grants): the
  guard makes every body match its route's type (JSON or multipart), so a ``text/plain``
  body dressed as JSON is refused.

Clients that are not browsers (curl, the CLI, services) send neither Origin nor
Sec-Fetch-Site, and a Host that is the address they connected to.
"""

import functools

from common.hosts import LOOPBACK_NAMES, ip_literal

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def host_name(host: str) -> str:
    """The name in a Host header, without port, brackets or a trailing dot, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, sep, port = host.rpartition(":")
    if sep and ":" not in name and port.isdigit():
        host = name
    return host.rstrip(".")


class SameSite:
    """``refusal(host, origin, fetch_site)`` → None, or why the request is refused (403).

    ``allowed_hosts`` may hold ``*``: any Host (for a gateway behind a proxy that checks it).
    """

    def __init__(self, bind_host: str, allowed_hosts: list[str]) -> None:
        names = {host_name(h) for h in allowed_hosts if h.strip()}
        self._any_host = "*" in names
        bind = host_name(bind_host)
        if bind and ip_literal(bind) is None:
            names.add(bind)
        self._names = frozenset(names | LOOPBACK_NAMES)
        # One entry per distinct Host header: a client sends the same one every time.
        self._host_ok = functools.lru_cache(maxsize=256)(self._check_host)

    def _check_host(self, host: str) -> bool:
        name = host_name(host)
        return self._any_host or name in self._names or ip_literal(name) is not None

    def refusal(self, host: str | None, origin: str | None, fetch_site: str | None) -> str | None:
        if host is not None and not self._host_ok(host):
            return (
                f"Host {host[:100]!r} is not a name of this gateway (DNS rebinding?); "
                "an operator adds its names to FAAS_GATEWAY_ALLOWED_HOSTS"
            )
        if origin is not None and not _same_origin(origin, host):
            return f"cross-site request refused: Origin {origin[:100]!r} is not this gateway's"
        if fetch_site is not None and fetch_site.strip().lower() == "cross-site":
            return "cross-site request refused (Sec-Fetch-Site: cross-site)"
        return None


def _same_origin(origin: str, host: str | None) -> bool:
    """Origin ``scheme://host[:port]`` names the Host the request was sent to. The scheme is
    not compared: behind a TLS-terminating proxy the page is https, the gateway's socket http."""
    scheme, sep, netloc = origin.strip().lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or host is None or not netloc or "/" in netloc:
        return False  # "null" (sandboxed frames, file://), or not an origin at all
    return _without_default_port(netloc, scheme) == _without_default_port(host.strip().lower(), scheme)


def _without_default_port(netloc: str, scheme: str) -> str:
    return netloc.removesuffix(_DEFAULT_PORTS[scheme]).rstrip(".")
