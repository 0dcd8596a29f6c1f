"""The sealed network's rules as text (node_agent/containers/firewall.py), what they are made
from (the host's resolvers and subnets, the settings), and the container configs that use it.
Applying them is tested on a real host in tests/e2e/test_isolation.py."""

import socket
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from node_agent.containers.config import ContainerSpec, container_config
from node_agent.containers.docker import DockerEngine
from node_agent.containers.firewall import (
    IN_CHAIN,
    OUT_CHAIN,
    Allowed,
    HostFacts,
    SealConfig,
    connected_subnets,
    deny_networks,
    resolvers,
    restore_input,
    ruleset4,
    ruleset6,
)
from node_agent.errors import NetworkUnavailable

# /proc/net/route of a host on 192.0.2.0/24 (default via 192.0.2.1) with Docker's bridge.
ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t0000000A\t0100000A\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_connected_subnets_are_read_from_the_route_table_without_gateways_or_default() -> None:
    assert connected_subnets(ROUTES) == (IPv4Network("192.0.2.0/24"), IPv4Network("172.17.0.0/16"))


def test_resolvers_are_the_non_loopback_ipv4_name_servers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver fd00::53\nsearch lan\n")
    other = tmp_path / "other.conf"
    other.write_text("nameserver 10.255.255.53\nnameserver 192.168.1.1\n")
    assert resolvers([conf, other, tmp_path / "missing"]) == (
        IPv4Address("10.255.255.53"),
        IPv4Address("192.168.1.1"),
    )


@pytest.mark.parametrize(
    ("entry", "network", "port"),
    [
        ("10.0.0.5", "10.0.0.5/32", None),
        ("10.0.0.0/24", "10.0.0.0/24", None),
        ("10.0.0.5/32:3128", "10.0.0.5/32", 3128),
    ],
)
def test_allow_entries(entry: str, network: str, port: int | None) -> None:
    assert Allowed.parse(entry) == Allowed(IPv4Network(network), port)


@pytest.mark.parametrize(
    ("entry", "why"),
    [("proxy.lan", "not an IPv4"), ("fd00::/8", "only IPv4"), ("10.0.0.5:0", "port"), ("10.0.0.5:http", "port")],
)
def test_bad_allow_entries_say_what_is_wrong(entry: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Allowed.parse(entry)


def test_deny_entries_networks_addresses_and_host_names(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(host: str, *args: Any, **kw: Any) -> list[Any]:
        if host == "nats.internal":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.51.100.7", 0))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    denied, notes = deny_networks(["203.0.113.7", "198.51.100.0/24", "nats.internal", "gone.internal", "fd00::1"])
    assert denied == tuple(IPv4Network(n) for n in ("203.0.113.7/32", "198.51.100.0/24", "198.51.100.7/32"))
    assert len(notes) == 1 and "gone.internal" in notes[0]


def test_inbound_everything_is_rejected_but_replies_and_the_allow_list() -> None:
    config = SealConfig(allow=(Allowed.parse("10.0.0.5/32:3128"),))
    inbound = ruleset4(config, HostFacts())[IN_CHAIN]
    assert inbound == [
        f"-A {IN_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        f"-A {IN_CHAIN} -d 10.0.0.5/32 -p tcp -m tcp --dport 3128 -j RETURN",
        f"-A {IN_CHAIN} -d 10.0.0.5/32 -p udp -m udp --dport 3128 -j RETURN",
        f"-A {IN_CHAIN} -j REJECT --reject-with icmp-admin-prohibited",
    ]


def test_outbound_private_link_local_host_subnets_and_denied_are_rejected_after_the_exceptions() -> None:
    config = SealConfig(allow=(Allowed.parse("10.1.0.0/16"),))
    facts = HostFacts(
        resolvers=(IPv4Address("10.255.255.53"),),
        subnets=(IPv4Network("192.0.2.0/24"), IPv4Network("172.17.0.0/16")),
        denied=(IPv4Network("203.0.113.7/32"),),
    )
    outbound = ruleset4(config, facts)[OUT_CHAIN]
    assert outbound[:3] == [
        f"-A {OUT_CHAIN} -d 10.1.0.0/16 -j RETURN",
        f"-A {OUT_CHAIN} -d 10.255.255.53/32 -p udp -m udp --dport 53 -j RETURN",
        f"-A {OUT_CHAIN} -d 10.255.255.53/32 -p tcp -m tcp --dport 53 -j RETURN",
    ]
    rejected = [r.split()[3] for r in outbound[3:]]
    assert all(r.endswith("-j REJECT --reject-with icmp-admin-prohibited") for r in outbound[3:])
    for must in ("169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8"):
        assert must in rejected
    assert "192.0.2.0/24" in rejected and "203.0.113.7/32" in rejected
    assert "172.17.0.0/16" not in rejected  # within 172.16/12 already: no duplicate rule


def test_ipv6_everything_from_the_bridge_is_rejected() -> None:
    v6 = ruleset6()
    assert v6[OUT_CHAIN] == [f"-A {OUT_CHAIN} -j REJECT --reject-with icmp6-adm-prohibited"]
    assert v6[IN_CHAIN][-1] == f"-A {IN_CHAIN} -j REJECT --reject-with icmp6-adm-prohibited"


def test_restore_input_replaces_just_these_chains() -> None:
    text = restore_input({"A": ["-A A -j RETURN"], "B": []})
    assert text == "*filter\n:A - [0:0]\n:B - [0:0]\n-A A -j RETURN\nCOMMIT\n"


def test_a_container_with_network_joins_the_given_network_one_without_has_none() -> None:
    online = container_config(ContainerSpec(image="i", cmd=[], network=True), "faas-fn")
    assert online["HostConfig"]["NetworkMode"] == "faas-fn" and online["NetworkDisabled"] is False
    offline = container_config(ContainerSpec(image="i", cmd=[]), "faas-fn")
    assert offline["HostConfig"]["NetworkMode"] == "none" and offline["NetworkDisabled"] is True
    for config in (online, offline):
        host = config["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"] and host["PidsLimit"] > 0


async def test_until_sealed_a_container_with_network_is_refused_before_docker_is_asked() -> None:
    engine = DockerEngine("unix:///nonexistent/docker.sock")  # never reached
    try:
        for create in (engine.create, engine.create_job):
            with pytest.raises(NetworkUnavailable, match="no network access: the container network has not been"):
                await create(ContainerSpec(image="i", cmd=["true"], network=True))
    finally:
        await engine.close()


async def test_a_docker_engine_on_another_host_cannot_be_sealed_from_here() -> None:
    engine = DockerEngine("tcp://192.0.2.10:2375")  # never reached
    try:
        with pytest.raises(NetworkUnavailable, match="on another host, whose firewall this agent cannot set"):
            await engine.seal_network(SealConfig())
        with pytest.raises(NetworkUnavailable, match="no network access: sealing its network failed: the Docker"):
            await engine.create(ContainerSpec(image="i", cmd=["true"], network=True))
        engine.open_network()  # the operator's choice: Docker's default bridge
        assert engine._config(ContainerSpec(image="i", cmd=[], network=True))["HostConfig"]["NetworkMode"] == "bridge"
    finally:
        await engine.close()
