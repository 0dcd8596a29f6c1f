"""The platform's secrets key: seals a job's secrets in the gateway, opens them in the agent.

Fernet (``cryptography``): AES-128-CBC with an HMAC-SHA256 over the whole token, so a
token that was changed or made with another key does not open (``SealError``), never
decrypts to garbage. The gateway and the agents share one key file; a symmetric key is
enough because both are platform services that see the secrets in clear anyway (the
gateway receives them, the agent hands them to Docker), and NATS users, the store and
whoever reads a stream or its files on disk have no key.

The key file holds one Fernet key per line (``#`` comments and blank lines allowed): the
first seals, every one opens. To rotate, put a new key first on every agent, then on every
gateway, and drop the old line once no job sealed with it is queued. The file must not be
readable by group or others (``chmod 600``).
"""

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SealError(Exception):
    """A key file that cannot be used, or a token that does not open with it."""


class SecretsKey:
    """``SecretsKey.load(path)``; ``seal(data) -> token``; ``open(token) -> data``."""

    def __init__(self, keys: list[bytes], source: str = "key") -> None:
        if not keys:
            raise SealError(f"{source}: no key in it")
        try:
            self._fernets = [Fernet(k) for k in keys]
        except ValueError:
            raise SealError(f"{source}: not a Fernet key (32 url-safe base64-encoded bytes)") from None
        self._multi = MultiFernet(self._fernets)
        self.source = source

    @classmethod
    def load(cls, path: Path) -> "SecretsKey":
        """The keys of ``path``; refuses a file that group or others may read or write."""
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except OSError as err:
            raise SealError(f"secrets key file {path}: {err.strerror or err}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SealError(f"secrets key file {path} is open to group or others: chmod 600 it")
        lines = [line.strip() for line in text.splitlines()]
        keys = [line.encode() for line in lines if line and not line.startswith("#")]
        return cls(keys, f"secrets key file {path}")

    @staticmethod
    def generate() -> bytes:
        return Fernet.generate_key()

    def seal(self, data: bytes) -> str:
        """Encrypted and authenticated with the first key."""
        return self._multi.encrypt(data).decode()

    def open(self, token: str) -> bytes:
        try:
            return self._multi.decrypt(token.encode())
        except InvalidToken:
            raise SealError("not sealed with a key this service has (or changed on the way)") from None


def ensure_key_file(path: Path) -> bool:
    """Create ``path`` with a new key, mode 0600, unless it exists; True if it was created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(SecretsKey.generate() + b"\n")
    return True
