"""The first admin token: written to a file only its owner can read, so that a fresh
platform has someone who may create the other tokens.

The file is the contract: while ``admin_token_file`` is set, a starting gateway makes sure
the file holds a valid admin token. If it does, nothing happens; if it is missing, or its
token was revoked or has expired, a new admin token (named ``admin``, else ``admin-2``...)
replaces it. To retire the bootstrap token for good, unset the setting, then revoke it.
"""

import logging
import os
import tempfile
from pathlib import Path

from common.logs import fields
from gateway.errors import GatewayError
from gateway.tokens import Tokens
from schemas import Role

log = logging.getLogger(__name__)

ADMIN_NAME = "admin"
_MAX_NAMES = 100


async def ensure_admin_token(tokens: Tokens, path: Path) -> bool:
    """True if a new token was written to ``path``."""
    current = _read_token(path)
    if current is not None:
        record = await tokens.find(current)
        if record is not None and record.role is Role.ADMIN and not record.expired():
            log.info("auth.admin_token_kept", extra=fields(path=str(path), token_name=record.name))
            return False
        log.warning("auth.admin_token_invalid", extra=fields(path=str(path)))
    for n in range(1, _MAX_NAMES + 1):
        name = ADMIN_NAME if n == 1 else f"{ADMIN_NAME}-{n}"
        try:
            issued = await tokens.create(name, Role.ADMIN)
        except GatewayError as err:
            if err.status == 409:
                continue  # that name is another admin token's: the next one
            raise
        write_secret(path, issued.token)
        log.info("auth.admin_token_written", extra=fields(path=str(path), token_name=name))
        return True
    raise RuntimeError(f"no free admin token name among {ADMIN_NAME}..{ADMIN_NAME}-{_MAX_NAMES}: revoke some")


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def write_secret(path: Path, secret: str) -> None:
    """Replace ``path`` atomically with a file of mode 0600 holding ``secret``: the file is
    written under a temporary name (mkstemp makes it 0600 from the start, so no other user
    can open it meanwhile), synced, then renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
