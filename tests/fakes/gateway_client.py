"""A gateway for the CLI's unit tests: canned answers per (method, path), the same methods as
``faas_cli.client.Client`` (the CLI uses only ``request`` and ``events`` underneath)."""

from collections.abc import AsyncIterator, Callable
from typing import Any

from faas_cli.client import Client, GatewayError

Answer = tuple[int, Any] | GatewayError | OSError


class FakeGatewayClient(Client):
    def __init__(self, answers: dict[tuple[str, str], Answer] | None = None) -> None:
        super().__init__("http://fake.invalid", "faas_test", "test")
        self.answers: dict[tuple[str, str], Answer] = dict(answers or {})
        self.streams: dict[str, list[tuple[str, Any]]] = {}
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        self.sent.append((method, path, kw))
        answer = self.answers.get((method, path))
        if answer is None:
            raise GatewayError(404, f"no route {method} {path} in the fake")
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def events(self, path: str) -> AsyncIterator[tuple[str, Any]]:
        self.sent.append(("GET", path, {"follow": True}))
        for event in self.streams.get(path, []):
            yield event

    async def deploy(
        self,
        name: str,
        runtime: str,
        archive: tuple[bytes, str],
        limits: dict[str, Any] | None,
        handler: str | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> Any:
        if on_sent is not None:
            for done in range(0, len(archive[0]) + 1, max(1, len(archive[0]) // 4)):
                on_sent(done)
        return (await self.request("POST", "/v1/functions", name=name, runtime=runtime, size=len(archive[0])))[1]
