"""API tokens: the tokens KV bucket (``schemas.tokens``), read from an in-memory copy.

Every request is authenticated, the invoke path at more than a thousand a second: once the
mirror's watch has loaded the bucket, a check is one SHA-256 and a dict lookup, with no
NATS round trip (an unknown token included, so that a stream of made-up tokens costs NATS
nothing). Another gateway's creation or revocation arrives through the watch within
milliseconds; until the watch has loaded the bucket (at start, after a lost connection) a
check reads KV instead.
"""

import asyncio
import functools
import logging
from dataclasses import dataclass
from datetime import datetime

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from common.kvmirror import KVMirror
from common.logs import fields
from gateway.errors import GatewayError, nats_unavailable, not_found
from schemas import InvalidMessage, Role, TokenName, TokenRecord, decode, encode, new_token, token_digest
from schemas.tokens import MAX_TOKEN_LENGTH, TOKEN_PREFIX, is_token_digest, token_name_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Issued:
    """A new token: the secret (shown once, never stored) and its record."""

    token: str
    record: TokenRecord


class Tokens:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.mirror = KVMirror(kv, "tokens")

    async def find(self, token: str) -> TokenRecord | None:
        """The record of a token (expired or not), None if it is unknown or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = token_digest(token)
        if self.mirror.ready:
            value = self.mirror.held(digest)
        else:
            with nats_unavailable("reading the tokens bucket"):
                value = await self.mirror.get(digest)
        return _decode_record(value) if value else None

    async def create(self, name: str, role: Role, expires_at: datetime | None = None) -> Issued:
        """409 if a token of that name exists (names are reserved with KV ``create``, so two
        gateways cannot both give one out)."""
        token = new_token()
        digest = token_digest(token)
        record = TokenRecord(name=name, role=role, expires_at=expires_at)
        data = encode(record)
        with nats_unavailable("saving the token"):
            try:
                await self._kv.create(token_name_key(name), encode(TokenName(digest=digest)))
            except KeyWrongLastSequenceError:
                raise GatewayError(
                    409, "conflict", f"a token named {name!r} exists: revoke it first or choose another name"
                ) from None
            try:
                revision = await self._kv.put(digest, data)
            except BaseException:
                await asyncio.shield(self._release_name(name))
                raise
        self.mirror.note(digest, revision, data)
        log.info("auth.token_created", extra=fields(token_name=name, role=role.value, expires_at=expires_at))
        return Issued(token, record)

    async def _release_name(self, name: str) -> None:
        try:
            await self._kv.delete(token_name_key(name))
        except Exception:
            log.warning("auth.token_name_left", extra=fields(token_name=name), exc_info=True)

    async def revoke(self, name: str) -> None:
        """Delete the token's record (every gateway stops taking it when its watch sees the
        delete), then its name. 404 if there is no token of that name."""
        key = token_name_key(name)
        with nats_unavailable("revoking the token"):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                raise not_found(f"no token named {name!r}") from None
            try:
                digest = decode(TokenName, entry.value or b"").digest
            except InvalidMessage:
                digest = None
            if digest is not None:
                await self._kv.delete(digest)
            await self._kv.delete(key)
        if digest is not None:
            await self.mirror.refresh(digest)
        log.info("auth.token_revoked", extra=fields(token_name=name))

    async def all(self) -> list[TokenRecord]:
        """Every token (expired ones included, until they are revoked), by name."""
        with nats_unavailable("listing tokens"):
            try:
                keys = await self._kv.keys()
            except NoKeysError:
                return []
            values = await asyncio.gather(*(self.mirror.get(k) for k in keys if is_token_digest(k)))
        records = [r for v in values if v and (r := _decode_record(v)) is not None]
        return sorted(records, key=lambda r: r.name)


@functools.lru_cache(maxsize=1024)
def _decode_record(value: bytes) -> TokenRecord | None:
    """Decoded once per stored value (records are frozen): the per-request check stays a lookup."""
    try:
        return decode(TokenRecord, value)
    except InvalidMessage:
        return None
