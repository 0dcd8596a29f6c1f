"""Calling other functions from a handler: ``import faas``.

    result = faas.call("resize", {"url": u})      # waits; raises faas.CallError on failure
    result = await faas.acall("resize", {...})    # the same, awaitable (asyncio.gather for fan-out)
    call_id = faas.spawn("notify", {...})         # fire and forget: the child's call id

The request travels over the shim's protocol channel to the agent, which publishes an
ordinary invocation (recorded with this call as its ``parent``), made with this function's
identity: the callee must be in the function's ``calls`` allow-list. A failed child raises a
:class:`CallError` whose class is named after the child's error type (``Timeout``,
``ValueError``, ``CallNotAllowed``, ``CallDepthExceeded``...), so that a failure passed on
up a tree keeps its type. ``call`` is safe from threads; ``acall`` from any event loop.
"""

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["CallError", "acall", "call", "spawn"]


class CallError(Exception):
    """A nested call that did not end DONE, or that was refused."""

    def __init__(self, type: str, message: str, call_id: "str | None" = None) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.call_id = call_id


_classes: "dict[str, type[CallError]]" = {}


def _error_class(name: str) -> "type[CallError]":
    if not name.isidentifier():
        return CallError
    if name not in _classes:
        _classes[name] = type(name, (CallError,), {"__module__": "faas"})
    return _classes[name]


class _Channel:
    """Pending requests by ref; the shim's reader thread hands in the agent's answers."""

    def __init__(self, send: "Callable[[dict], None]") -> None:
        self._send = send
        self._refs = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Callable[[dict], None]] = {}

    def request(self, function: str, params: Any, wait: bool, on_answer: "Callable[[dict], None]") -> None:
        if not isinstance(function, str):
            raise TypeError("the function to call is named by a string")
        with self._lock:
            ref = next(self._refs)
            self._pending[ref] = on_answer
        self._send({"kind": "call", "ref": ref, "function": function, "params": params, "wait": wait})

    def deliver(self, answer: dict) -> None:
        with self._lock:
            on_answer = self._pending.pop(answer.get("ref"), None)  # type: ignore[arg-type]
        if on_answer is not None:  # an answer for a call that ended is dropped
            on_answer(answer)


_channel: "_Channel | None" = None


def _bind(send: "Callable[[dict], None]") -> _Channel:
    """The shim's hook: nested calls go out through ``send``."""
    global _channel
    _channel = _Channel(send)
    return _channel


def _need() -> _Channel:
    if _channel is None:
        raise RuntimeError("faas.call works inside a function called through the handler protocol")
    return _channel


def _outcome(answer: dict) -> Any:
    if answer.get("ok"):
        return answer.get("result")
    error = answer.get("error") or {}
    kind = error.get("type") or "CallError"
    raise _error_class(kind)(kind, error.get("message", ""), answer.get("id"))


def _blocking(function: str, params: Any, wait: bool) -> dict:
    done = threading.Event()
    box: list[dict] = []

    def on_answer(answer: dict) -> None:
        box.append(answer)
        done.set()

    _need().request(function, params, wait, on_answer)
    done.wait()
    return box[0]


def call(function: str, params: Any = None) -> Any:
    """Call ``function`` with ``params`` and wait for its result (raises :class:`CallError`)."""
    return _outcome(_blocking(function, params, True))


async def acall(function: str, params: Any = None) -> Any:
    """:func:`call`, awaitable: many at once with ``asyncio.gather``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[dict] = loop.create_future()

    def on_answer(answer: dict) -> None:
        loop.call_soon_threadsafe(lambda: future.done() or future.set_result(answer))

    _need().request(function, params, True, on_answer)
    return _outcome(await future)


def spawn(function: str, params: Any = None) -> str:
    """Queue a call of ``function`` without waiting for it; its call id."""
    answer = _blocking(function, params, False)
    _outcome(answer)  # a refused call raises
    return answer["id"]
