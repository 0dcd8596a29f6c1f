"""Test clients connect to the test's nats-server as the NATS user of what they stand for: a
service under test as its own user (gateway, agent, store), the test itself as ``admin``."""

from typing import Any

from nats.aio.client import Client

from common.jetstream import connect
from common.natsserver import NatsServer


def service_settings(server: NatsServer, user: str) -> dict[str, Any]:
    """The NATS fields of a service's settings for connecting to ``server`` as ``user``."""
    auth = server.auth(user)
    return {"nats_url": server.url, "nats_user": auth.user, "nats_password": auth.password, "nats_tls_ca": auth.tls_ca}


async def connect_as(server: NatsServer, user: str = "admin", name: str = "test") -> Client:
    return await connect(server.url, name, server.auth(user))


def service_env(server: NatsServer, env_prefix: str, user: str) -> dict[str, str]:
    """The same as environment variables (``FAAS_STORE_NATS_URL``...), for a service process."""
    env = {f"{env_prefix}{k.upper()}": v for k, v in service_settings(server, user).items() if v is not None}
    if (password := server.auth(user).password) is not None:
        env[f"{env_prefix}NATS_PASSWORD"] = password.get_secret_value()
    return {k: str(v) for k, v in env.items()}
