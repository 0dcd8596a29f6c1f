"""The gateway's one root exception; it becomes an HTTP or nats.micro error only at the edge."""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import nats.errors
import nats.js.errors
from nats.errors import NoRespondersError
from pydantic import ValidationError

from schemas import NAME_PATTERN, is_valid_name
from schemas.names import CALL_ID_PATTERN

NAME_RULE = "1-63 letters, digits, '-' or '_', starting with a letter or digit"
_ID = re.compile(CALL_ID_PATTERN)


class GatewayError(Exception):
    """``status`` is an HTTP status (also used as the nats.micro error code)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.code!r}, {self.message!r})"


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, "bad_request", message)


def unauthorized(message: str, invalid_token: bool = False) -> GatewayError:
    """401 with the ``WWW-Authenticate`` challenge of RFC 6750."""
    challenge = 'Bearer realm="faas"' + (', error="invalid_token"' if invalid_token else "")
    return GatewayError(401, "unauthorized", message, {"WWW-Authenticate": challenge})


def forbidden(message: str) -> GatewayError:
    return GatewayError(403, "forbidden", message)


def not_found(message: str) -> GatewayError:
    return GatewayError(404, "not_found", message)


def too_large(message: str) -> GatewayError:
    return GatewayError(413, "payload_too_large", message)


# What a 503 tells the client to wait before trying again: NATS reconnects within a second
# or two of a server coming back, and a load balancer moves on to another gateway sooner.
RETRY_AFTER_S = 2


def unavailable(message: str, retry_after_s: int = RETRY_AFTER_S) -> GatewayError:
    """503 with ``Retry-After``: a pause (NATS away, a limit reached), worth trying again."""
    return GatewayError(503, "unavailable", message, {"Retry-After": str(retry_after_s)})


def check_name(kind: str, name: str) -> str:
    """A runtime or function name goes into NATS subjects, KV keys and paths: refuse anything else."""
    if not is_valid_name(name):
        raise GatewayError(400, "invalid_name", f"invalid {kind} name {name!r}: use {NAME_RULE} ({NAME_PATTERN})")
    return name


def check_id(kind: str, value: str) -> str:
    """A call or job id goes into NATS subjects: anything else cannot exist (404)."""
    if not _ID.match(value):
        raise not_found(f"no {kind} {value!r}")
    return value


def describe_validation(err: ValidationError, what: str = "") -> str:
    """One readable line out of a pydantic error, naming each field."""
    missing = [".".join(str(p) for p in e["loc"]) for e in err.errors() if e["type"] == "missing"]
    parts = []
    if missing:
        parts.append("missing field" + ("s" if len(missing) > 1 else "") + ": " + ", ".join(missing))
    for e in err.errors(include_url=False):
        if e["type"] == "missing":
            continue
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    prefix = f"invalid {what}: " if what else ""
    return prefix + "; ".join(parts)


def invalid(err: ValidationError, what: str = "") -> GatewayError:
    return bad_request(describe_validation(err, what))


@contextmanager
def nats_unavailable(what: str) -> Iterator[None]:
    """Turn "NATS did not answer" into a 503 naming what was being asked for."""
    try:
        yield
    except NoRespondersError:
        raise unavailable(f"{what}: no responders (is the service running?)") from None
    except nats.errors.TimeoutError:
        raise unavailable(f"{what}: NATS did not answer in time") from None
    except (
        nats.errors.ConnectionClosedError,
        nats.errors.ConnectionDrainingError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.StaleConnectionError,
        nats.errors.OutboundBufferLimitError,
    ) as err:
        raise unavailable(f"{what}: NATS connection unavailable ({type(err).__name__})") from None
    except nats.js.errors.ServiceUnavailableError:
        raise unavailable(f"{what}: JetStream unavailable") from None
    except nats.js.errors.NoStreamResponseError:
        # No PubAck: the stream's server is gone and no other one holds it (yet: a replica
        # becomes leader within seconds; with one replica, until that server is back).
        raise unavailable(f"{what}: no stream answered (JetStream server lost?)") from None
