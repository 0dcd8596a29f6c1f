"""Where callbacks may go: the address rules (IPv4, IPv6, embedded and numeric forms), the
allow and deny lists, the invoke-time check, and the resolver every delivery connects through."""

import ipaddress
import socket
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.callback_guard import (
    CallbackGuard,
    CallbackRefused,
    GuardedResolver,
    address_class,
    own_addresses,
    parse_host,
)
from gateway.callback_post import post_with_retries
from tests.unit.test_gateway_callback_post import FAST, Receiver, Serve, serve  # noqa: F401 -- fixture

LOCAL = [ipaddress.ip_network("127.0.0.1/32")]


class FakeDNS(AbstractResolver):
    """Answers from ``answer(host)`` (a list of addresses; empty: the name does not exist),
    and counts the lookups."""

    def __init__(self, answer: Callable[[str], list[str]]) -> None:
        self.answer = answer
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        addresses = self.answer(host.rstrip("."))
        if not addresses:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("address", "expect"),
    [
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),  # NAT64 of a public address
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback (as 127.0.0.1)"),
        ("64:ff9b::7f00:1", "loopback (as 127.0.0.1)"),
        ("2002:7f00:1::", "loopback (as 127.0.0.1)"),  # 6to4
        ("169.254.169.254", "link-local"),
        ("::ffff:169.254.169.254", "link-local (as 169.254.169.254)"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "not publicly routable"),
        ("255.255.255.255", "not publicly routable"),
        ("192.0.2.10", "not publicly routable"),
        ("2001:db8::1", "not publicly routable"),
        ("::127.0.0.1", "not publicly routable"),  # IPv4-compatible (deprecated)
    ],
)
def test_address_rules(address: str, expect: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == expect


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f000001", "127.0.0.1"),  # hex
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short form
        ("017700000001", "127.0.0.1"),  # octal
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("example.com", None),
        ("localhost", None),
    ],
)
def test_ip_literal_forms_are_read_as_the_address_they_stand_for(host: str, address: str | None) -> None:
    assert parse_host(host) == (ipaddress.ip_address(address) if address else None)


def test_the_allow_list_lets_through_and_own_addresses_and_denied_networks_are_refused() -> None:
    guard = CallbackGuard(
        allow=LOCAL,
        deny=[ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2a00:1450::/32")],
        own=[ipaddress.ip_address("8.8.4.4")],
    )
    assert guard.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert guard.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert guard.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert guard.refusal(ipaddress.ip_address("8.8.4.4")) == "one of the platform's own addresses"
    assert guard.refusal(ipaddress.ip_address("::ffff:8.8.4.4")) == "one of the platform's own addresses"
    assert "callback_deny_networks" in (guard.refusal(ipaddress.ip_address("2a00:1450::1")) or "")
    assert guard.refusal(ipaddress.ip_address("1.1.1.1")) is None
    assert guard.literal_refusal("2130706433") is None  # allowed: it is 127.0.0.1
    assert guard.literal_refusal("0x7f000002") == "0x7f000002 is loopback"
    assert guard.literal_refusal("hooks.example.com") is None  # a name: for the resolver


def test_own_addresses_include_this_hosts_and_the_named_hosts() -> None:
    own = own_addresses(["127.0.0.1", "no-such-host.invalid"])
    assert ipaddress.ip_address("127.0.0.1") in own
    assert not any(a.is_unspecified for a in own)


async def test_invoke_time_check_resolves_and_every_address_must_pass() -> None:
    dns = FakeDNS(
        lambda host: {
            "hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"],
            "split.example.com": ["93.184.216.34", "10.0.0.7"],
            "meta.example.com": ["169.254.169.254"],
        }.get(host, [])
    )
    guard = CallbackGuard(resolver=dns)
    assert await guard.check_url("https://hooks.example.com/x?token=1") is None
    split = await guard.check_url("https://split.example.com/x") or ""
    assert "(private)" in split and "10.0.0.7" not in split  # internal addresses are not told
    assert "(link-local)" in (await guard.check_url("http://meta.example.com/latest/meta-data/") or "")
    assert "does not resolve" in (await guard.check_url("http://nowhere.example.com/") or "")
    assert await guard.check_url("http://2130706433:8080/x") == "2130706433 is loopback"
    assert (
        await guard.check_url("http://[::ffff:169.254.169.254]/")
        == "::ffff:169.254.169.254 is link-local (as 169.254.169.254)"
    )
    assert dns.lookups == ["hooks.example.com", "split.example.com", "meta.example.com", "nowhere.example.com"]


async def test_the_delivery_resolver_passes_only_allowed_addresses() -> None:
    dns = FakeDNS(lambda host: {"mixed.example": ["10.0.0.1", "93.184.216.34"], "inside.example": ["127.0.0.1"]}[host])
    resolver = GuardedResolver(CallbackGuard(resolver=dns))
    assert [r["host"] for r in await resolver.resolve("mixed.example", 443)] == ["93.184.216.34"]
    with pytest.raises(CallbackRefused, match="loopback"):
        await resolver.resolve("inside.example", 80)


async def test_a_delivery_never_connects_to_a_refused_address(serve: Serve) -> None:  # noqa: F811
    receiver = Receiver([200])
    url = await serve(receiver)  # http://127.0.0.1:<port>/hook
    port = url.split(":")[2].split("/")[0]
    dns = FakeDNS(lambda host: ["127.0.0.1"])  # every name now points at the receiver

    async def deliver(guard: CallbackGuard, target: str) -> tuple[bool, int, str | None]:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard))
        async with aiohttp.ClientSession(connector=connector) as session:
            outcome = await post_with_retries(session, target, b"{}", {}, FAST, guard)
        return outcome.delivered, outcome.attempts, outcome.error

    refused = CallbackGuard(resolver=dns)
    # A name that (now) resolves to loopback: refused once, not retried, nothing connects.
    delivered, attempts, error = await deliver(refused, f"http://rebound.example:{port}/hook")
    assert not delivered and attempts == 1 and error is not None and error.startswith("refused:")
    assert "loopback" in error
    # An IP literal (aiohttp connects to it without resolving) in any form.
    for literal in ("127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"):
        delivered, attempts, error = await deliver(refused, f"http://{literal}:{port}/hook")
        assert not delivered and attempts == 1 and (error or "").startswith("refused:"), literal
    assert receiver.requests == []
    # The same name with the address allowed: the connection does go through the resolver.
    delivered, _, _ = await deliver(CallbackGuard(allow=LOCAL, resolver=dns), f"http://rebound.example:{port}/hook")
    assert delivered and len(receiver.requests) == 1


def test_the_networks_settings_take_a_comma_separated_list_or_json() -> None:
    from gateway.settings import GatewaySettings

    s = GatewaySettings(callback_allow_networks="127.0.0.1/32, ::1/128", callback_deny_networks='["203.0.113.0/24"]')
    assert [str(n) for n in s.callback_allow_networks] == ["127.0.0.1/32", "::1/128"]
    assert [str(n) for n in s.callback_deny_networks] == ["203.0.113.0/24"]
    assert GatewaySettings().callback_allow_networks == []
    with pytest.raises(ValueError):
        GatewaySettings(callback_allow_networks="127.0.0.1/8")  # host bits set: a typo, refused
