"""The NATS users' permissions as data (the real server's verdicts: tests/integration/
test_nats_permissions.py), and the client side of the credentials."""

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from common.natsauth import ADMIN, USERS, ensure_passwords, inbox_prefix, kv_stream, layout_streams, permissions
from common.natsclient import NatsAuth
from common.tlsgen import issue
from gateway.settings import GatewaySettings
from node_agent.settings import AgentSettings
from schemas import Layout
from store.settings import StoreSettings

LAYOUT = Layout("faas")


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def _may_publish(user: str, subject: str) -> bool:
    perms = permissions(LAYOUT)[user]
    return any(_matches(a, subject) for a in perms.publish) and not any(
        _matches(d, subject) for d in perms.publish_deny
    )


def test_the_matcher_is_nats_matching() -> None:
    assert _matches("a.>", "a.b.c") and not _matches("a.>", "a")
    assert _matches("a.*.c", "a.b.c") and not _matches("a.*", "a.b.c")


@pytest.mark.parametrize("stream", layout_streams(LAYOUT))
@pytest.mark.parametrize("op", ["DELETE", "PURGE"])
def test_no_service_may_delete_or_purge_a_stream(stream: str, op: str) -> None:
    for user in USERS:
        allowed = _may_publish(user, f"$JS.API.STREAM.{op}.{stream}")
        # the gateway replaces objects, which purges their old chunks
        assert allowed == (user == ADMIN or (user == "gateway" and op == "PURGE" and stream.startswith("OBJ_")))


def test_only_the_gateway_and_admin_make_or_change_streams() -> None:
    for stream in layout_streams(LAYOUT):
        for op in ("CREATE", "UPDATE"):
            allowed = {u for u in USERS if _may_publish(u, f"$JS.API.STREAM.{op}.{stream}")}
            assert allowed == {"gateway", "admin"}


@pytest.mark.parametrize(
    "subject",
    [
        f"$JS.API.STREAM.INFO.{kv_stream('faas_tokens')}",
        f"$JS.API.DIRECT.GET.{kv_stream('faas_tokens')}.$KV.faas_tokens.t1",
        f"$JS.API.STREAM.MSG.GET.{kv_stream('faas_tokens')}",
        f"$JS.API.CONSUMER.CREATE.{kv_stream('faas_tokens')}",
        f"$JS.API.CONSUMER.CREATE.{kv_stream('faas_tokens')}.c.$KV.faas_tokens.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{kv_stream('faas_tokens')}.c",
        "$KV.faas_tokens.t1",
    ],
)
def test_the_tokens_bucket_is_the_gateways_and_admins_only(subject: str) -> None:
    assert {u for u in USERS if _may_publish(u, subject)} == {"gateway", "admin"}


def test_the_invoker_publishes_invocations_and_calls_only() -> None:
    assert _may_publish("invoker", "faas.invoke.rt.python")
    assert _may_publish("invoker", "faas.call.dice")
    for subject in ("faas.invoke.job.1", "faas.invoke.node.n1", "faas.events.c.finished", "$KV.faas_runtimes.x"):
        assert not _may_publish("invoker", subject)


def test_a_service_reads_replies_only_in_its_own_inbox() -> None:
    perms = permissions(LAYOUT)
    for user in ("gateway", "agent", "store"):
        assert f"{inbox_prefix(user)}.>" in perms[user].subscribe
        assert not any(_matches(s, f"{inbox_prefix('admin')}.x.1") for s in perms[user].subscribe)
    invoker = perms["invoker"]
    for user in ("gateway", "agent", "store", "admin"):
        assert any(_matches(d, f"{inbox_prefix(user)}.x.1") for d in invoker.subscribe_deny)


def test_permissions_follow_the_prefix() -> None:
    acme = permissions(Layout("acme"))["agent"]
    assert "acme.events.>" in acme.publish
    assert not any(s.startswith("faas.") or "FAAS_" in s for s in acme.publish)


def test_passwords_are_made_once_and_private(tmp_path: Path) -> None:
    first = ensure_passwords(tmp_path / "users")
    assert set(first) == set(USERS) and len(set(first.values())) == len(USERS)
    assert (tmp_path / "users").stat().st_mode & 0o777 == 0o700
    assert all((tmp_path / "users" / f"{u}.password").stat().st_mode & 0o777 == 0o600 for u in USERS)
    assert ensure_passwords(tmp_path / "users") == first


# --- the client side ------------------------------------------------------------------------


SERVICES = [(GatewaySettings, "FAAS_GATEWAY_"), (AgentSettings, "FAAS_AGENT_"), (StoreSettings, "FAAS_STORE_")]


@pytest.mark.parametrize(("cls", "prefix"), SERVICES)
def test_each_service_reads_its_nats_credentials_and_never_shows_the_password(
    cls: type[GatewaySettings | AgentSettings | StoreSettings],
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    issue(tmp_path, "x")
    ca = tmp_path / "ca.pem"
    monkeypatch.setenv(f"{prefix}NATS_USER", "someone")
    monkeypatch.setenv(f"{prefix}NATS_PASSWORD", "s3cret-pw")
    monkeypatch.setenv(f"{prefix}NATS_TLS_CA", str(ca))
    settings = cls()
    assert settings.nats_auth.user == "someone"
    assert settings.nats_auth.tls_ca == ca
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.nats_auth)):
        assert "s3cret-pw" not in shown
    options = settings.nats_auth.connect_options()
    assert options["user"] == "someone" and options["password"] == "s3cret-pw"
    assert options["inbox_prefix"] == "_INBOX.someone"


def test_a_client_certificate_needs_its_key_and_a_password_its_user() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(nats_tls_cert=Path("/c.pem"))
    with pytest.raises(ValueError):
        NatsAuth(password=SecretStr("x"))


def test_tls_context_trusts_the_ca_and_presents_the_certificate(tmp_path: Path) -> None:
    issued = issue(tmp_path, "gw")
    auth = NatsAuth(user="gateway", tls_ca=tmp_path / "ca.pem", tls_cert=issued.cert, tls_key=issued.key)
    context = auth.tls_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert NatsAuth().tls_context() is None
    assert NatsAuth().connect_options() == {"inbox_prefix": "_INBOX"}
