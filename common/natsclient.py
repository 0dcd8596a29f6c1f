"""How a service proves who it is to NATS: its user and password, and TLS.

Every service's settings inherit :class:`NatsClientSettings` (``FAAS_GATEWAY_NATS_USER``,
``FAAS_AGENT_NATS_PASSWORD``, ``FAAS_STORE_NATS_TLS_CA``...) and hand
:attr:`NatsClientSettings.nats_auth` to ``common.jetstream.connect``. The password is a
``SecretStr``: it is never printed with the settings, nor logged.
"""

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings

from common.natsauth import inbox_prefix


@dataclass(frozen=True)
class NatsAuth:
    """A client's credentials. Without a user it connects anonymously (a server without
    authorization); without TLS files it speaks TLS only if the URL is ``tls://`` or the
    server requires it (then verified against the system's CAs)."""

    user: str | None = None
    password: SecretStr | None = None
    # CA bundle that signed the servers' certificates; a client certificate and its key
    # for servers that verify clients.
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("a NATS client certificate needs its key, and a key its certificate")
        if self.password is not None and not self.user:
            raise ValueError("a NATS password needs a NATS user")

    def tls_context(self) -> ssl.SSLContext | None:
        if self.tls_ca is None and self.tls_cert is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
        if self.tls_cert is not None and self.tls_key is not None:
            context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        return context

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of ``nats.connect``."""
        options: dict[str, Any] = {"inbox_prefix": inbox_prefix(self.user)}
        if self.user:
            options["user"] = self.user
            if self.password is not None:
                options["password"] = self.password.get_secret_value()
        context = self.tls_context()
        if context is not None:
            options["tls"] = context
        return options


class NatsClientSettings(BaseSettings):
    """The NATS credential settings every service has (with the service's env prefix)."""

    # This service's NATS user (gateway, agent, store) and its password; unset: anonymous.
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    # TLS: the CA of the NATS servers' certificates; a client certificate and key if the
    # servers verify clients.
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None

    @model_validator(mode="after")
    def _check_nats_auth(self) -> "NatsClientSettings":
        self.nats_auth  # noqa: B018 (raises ValueError on an incomplete pair)
        return self

    @property
    def nats_auth(self) -> NatsAuth:
        return NatsAuth(
            user=self.nats_user or None,
            password=self.nats_password,
            tls_ca=self.nats_tls_ca,
            tls_cert=self.nats_tls_cert,
            tls_key=self.nats_tls_key,
        )
