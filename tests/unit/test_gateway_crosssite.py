"""The cross-site rules (Host, Origin, Sec-Fetch-Site), loopback addresses, and the gateway's
refusal to run without auth anywhere but on loopback."""

import pytest
from pydantic import ValidationError

from common.hosts import is_loopback_host
from faas_cli.up import UpConfig, UpError
from gateway.crosssite import SameSite, host_name
from gateway.settings import GatewaySettings


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("localhost:8080", "localhost"),
        ("LocalHost", "localhost"),
        ("localhost.:80", "localhost"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("faas.example.org:443", "faas.example.org"),
    ],
)
def test_host_names(raw: str, name: str) -> None:
    assert host_name(raw) == name


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1", "example.org", "localhost.evil"])
def test_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_same_site_rules() -> None:
    s = SameSite("0.0.0.0", ["faas.example.org"])
    assert s.refusal("localhost:8080", None, None) is None
    assert s.refusal("10.1.2.3:8080", None, None) is None
    assert s.refusal("faas.example.org", "https://faas.example.org", "same-origin") is None
    assert s.refusal("faas.example.org:80", "http://faas.example.org", None) is None
    assert s.refusal(None, None, None) is None  # HTTP/1.0 without Host: no browser sends that
    assert "Host" in (s.refusal("rebind.evil.example", None, None) or "")
    assert "Origin" in (s.refusal("localhost:8080", "http://localhost:3000", None) or "")
    assert "Origin" in (s.refusal("localhost:8080", "null", None) or "")
    assert "Origin" in (s.refusal(None, "http://localhost:8080", None) or "")
    assert "Origin" in (s.refusal("localhost:8080", "ftp://localhost:8080", None) or "")
    assert "Sec-Fetch-Site" in (s.refusal("localhost:8080", None, "cross-site") or "")


def test_the_bind_name_and_a_wildcard() -> None:
    assert SameSite("gw1.internal", []).refusal("gw1.internal:8080", None, None) is None
    assert SameSite("0.0.0.0", []).refusal("gw1.internal:8080", None, None) is not None
    assert SameSite("0.0.0.0", ["*"]).refusal("anything.example", None, None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_no_auth_is_refused_off_loopback(host: str) -> None:
    with pytest.raises(ValidationError, match="loopback only"):
        GatewaySettings(auth=False, host=host)
    GatewaySettings(auth=True, host=host)  # with auth, any address
    with pytest.raises(UpError, match="--no-auth"):
        UpConfig(host=host, auth=False).check()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_no_auth_on_loopback(host: str) -> None:
    assert not GatewaySettings(auth=False, host=host).auth
    UpConfig(host=host, auth=False).check()
