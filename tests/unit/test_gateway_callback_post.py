"""Callback POSTs: URL checks, the backoff schedule, retries against a local HTTP server."""

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from gateway.callback_post import RetryPolicy, check_callback_url, host_of, post_with_retries

FAST = RetryPolicy(max_attempts=4, first_delay_s=0.01, max_delay_s=0.02, deadline_s=10, timeout_s=2)


class Receiver:
    """Answers each POST with the next status of ``statuses`` (the last one from then on)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        return web.Response(status=status, text="ok" if status < 300 else "nope")


Serve = Callable[["Receiver"], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(receiver: Receiver) -> str:
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    yield start
    for r in runners:
        await r.cleanup()


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(first_delay_s=0.5, max_delay_s=3)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://example.com/hook?token=1", None),
        ("http://10.0.0.1:8080/x", None),
        ("ftp://example.com/x", "http"),
        ("https:///nohost", "no host"),
        ("example.com/hook", "http"),
        ("http://example.com:notaport/", "not a URL"),
        ("http://exa mple.com/", "whitespace"),
        ("https://example.com/" + "a" * 2100, "2048"),
    ],
)
def test_callback_urls_are_checked(url: str, problem: str | None) -> None:
    found = check_callback_url(url)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_logs_see_only_the_host() -> None:
    assert host_of("https://hooks.example.com/secret/path?token=abc") == "hooks.example.com"


async def test_two_failures_then_success_is_three_attempts(serve: Serve) -> None:
    receiver = Receiver([500, 503, 204])
    url = await serve(receiver)
    async with aiohttp.ClientSession() as session:
        outcome = await post_with_retries(session, url, b'{"id":"c1"}', {"X-Faas-Call-Id": "c1"}, FAST)
    assert outcome.delivered and outcome.attempts == 3 and outcome.status_code == 204 and outcome.error is None
    assert [body for _, body in receiver.requests] == [b'{"id":"c1"}'] * 3
    assert all(h["X-Faas-Call-Id"] == "c1" for h, _ in receiver.requests)


async def test_giving_up_after_max_attempts_reports_the_last_failure(serve: Serve) -> None:
    receiver = Receiver([302])  # a redirect is not a delivery
    url = await serve(receiver)
    async with aiohttp.ClientSession() as session:
        outcome = await post_with_retries(session, url, b"{}", {}, FAST)
    assert not outcome.delivered and outcome.attempts == 4
    assert outcome.status_code == 302 and outcome.error == "HTTP 302"


async def test_connection_errors_are_retried_until_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=100, first_delay_s=0.05, max_delay_s=0.05, deadline_s=0.3, timeout_s=1)
    async with aiohttp.ClientSession() as session:
        # Port 9 on localhost: nothing listens, the connection is refused at once.
        outcome = await post_with_retries(session, "http://127.0.0.1:9/hook", b"{}", {}, policy)
    assert not outcome.delivered and 2 <= outcome.attempts < 100
    assert outcome.status_code is None and outcome.error and "Connect" in outcome.error
