"""POSTing one finished call to its callback URL, retried with exponential backoff.

A delivery succeeds on any 2xx answer. Anything else (another status, a redirect, a timeout,
a connection error) is retried after ``first_delay_s``, doubling up to ``max_delay_s``, until
``max_attempts`` tries or ``deadline_s`` after the first have passed. A URL the guard
refuses (:mod:`gateway.callback_guard`: an internal address, found before connecting) is a
failed delivery at once, never retried.
"""

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from gateway.callback_guard import CallbackGuard, CallbackRefused
from schemas import CallbackOutcome

_ERROR_CHARS = 300


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    deadline_s: float = 300.0
    # One attempt: connect + send + the answer's status line.
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or min(self.first_delay_s, self.max_delay_s) < 0:
            raise ValueError(f"invalid retry policy {self}")
        if self.deadline_s <= 0 or self.timeout_s <= 0:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1 = the first retry)."""
        return float(min(self.first_delay_s * 2 ** (retry - 1), self.max_delay_s))


def check_callback_url(url: str) -> str | None:
    """Why ``url`` cannot be a callback URL (None: it can)."""
    if len(url) > 2048:
        return "is longer than 2048 characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError as err:
        return f"is not a URL ({err})"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    if any(c.isspace() for c in url):
        return "contains whitespace"
    return None


def host_of(url: str) -> str:
    """For logs: the URL's host only (its path and query may hold a secret)."""
    return urlsplit(url).hostname or "?"


async def post_with_retries(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    policy: RetryPolicy,
    guard: CallbackGuard | None = None,
) -> CallbackOutcome:
    """``session`` must resolve names with ``GuardedResolver(guard)`` for the guard to hold
    at connection time; IP-literal hosts (which aiohttp does not resolve) are checked here."""
    problem = check_callback_url(url)
    if problem is None and guard is not None:
        problem = guard.literal_refusal(urlsplit(url).hostname or "")
    if problem is not None:
        return CallbackOutcome(url=url, delivered=False, attempts=1, error=f"refused: {problem}"[:_ERROR_CHARS])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.deadline_s
    attempts = 0
    while True:
        attempts += 1
        status: int | None = None
        remaining = max(deadline - loop.time(), 0.001)
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=min(policy.timeout_s, remaining)),
            ) as response:
                status = response.status
            if 200 <= status < 300:
                return CallbackOutcome(url=url, delivered=True, attempts=attempts, status_code=status)
            error = f"HTTP {status}"
        except aiohttp.ClientConnectorError as err:
            if isinstance(err.os_error, CallbackRefused):
                error = f"refused: {err.os_error}"[:_ERROR_CHARS]
                return CallbackOutcome(url=url, delivered=False, attempts=attempts, error=error)
            error = f"{type(err).__name__}: {err}"[:_ERROR_CHARS]
        except (aiohttp.ClientError, TimeoutError) as err:
            error = (f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)[:_ERROR_CHARS]
        pause = policy.delay(attempts)
        if attempts >= policy.max_attempts or loop.time() + pause >= deadline:
            return CallbackOutcome(url=url, delivered=False, attempts=attempts, status_code=status, error=error)
        await asyncio.sleep(pause)
