"""API tokens: what the tokens KV bucket holds, and the token format.

A token is ``faas_`` + 43 URL-safe characters (``secrets.token_urlsafe(32)``: 256 random
bits). The bucket never holds a token, only its SHA-256: the key of a token's record is
the hex digest of the token. A fast hash is the right one here: argon2/bcrypt slow down
the guessing of low-entropy passwords, and nothing can guess a 256-bit random secret,
hashed or not; what the hash protects against is a reader of the bucket (or of a backup)
using what it read. It also keeps the per-request check to one SHA-256 and a dict lookup.

Two kinds of keys share the bucket:

* ``<sha256 hex>`` → :class:`TokenRecord` (name, role, created_at, expires_at);
* ``name.<name>`` → :class:`TokenName` (the digest of the token of that name): created with
  KV ``create`` (which fails if the key exists), so a name is unique across gateways.

A revocation deletes both; every gateway follows the bucket with a watch.
"""

import hashlib
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.clock import utcnow
from schemas.names import NAME_PATTERN

TOKEN_PREFIX = "faas_"
# faas_ + token_urlsafe(32) is 48 characters; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 128
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_NAME_KEY_PREFIX = "name."
# The longest lifetime a token may be given (ten years): past that, say "never" (no expiry).
MAX_TOKEN_LIFETIME_S = 10 * 366 * 24 * 3600


class Role(StrEnum):
    """What a token may do (the gateway maps each route to the rights it needs)."""

    ADMIN = "admin"  # everything, tokens included
    DEPLOY = "deploy"  # runtimes, functions, jobs, invoke, read
    INVOKE = "invoke"  # invoke, and read calls and their logs
    READ = "read"  # read only (no tokens)


class TokenRecord(BaseModel):
    """A token as stored and listed: never the token itself, nor its digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    role: Role
    created_at: datetime = Field(default_factory=utcnow)
    # None: never expires.
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or utcnow())


class TokenName(BaseModel):
    """The value of a ``name.<name>`` key: which token has that name."""

    model_config = ConfigDict(extra="forbid")

    digest: str = Field(pattern=_DIGEST.pattern)


class TokenRequest(BaseModel):
    """What ``POST /v1/tokens`` takes. Without a name, the gateway makes one (``<role>-<hex>``);
    without ``expires_in_s`` or ``expires_at``, the token never expires."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    role: Role
    expires_in_s: float | None = Field(default=None, gt=0, le=MAX_TOKEN_LIFETIME_S)
    # A time without a zone is taken as UTC.
    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_in_s is not None and self.expires_at is not None:
            raise ValueError("give expires_in_s or expires_at, not both")
        return self


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """The KV key of a token's record."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def is_token_digest(key: str) -> bool:
    return bool(_DIGEST.match(key))


def token_name_key(name: str) -> str:
    return _NAME_KEY_PREFIX + name
