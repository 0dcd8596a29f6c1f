"""What a route handler declares about itself for ``GET /openapi.json``: its parameters, body
and answers, as the pydantic models it validates and answers with.

``@documented(...)`` sits on the handler, next to the code it describes; ``gateway.openapi``
reads it from every route of the route table (a route without it fails a unit test).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

H = TypeVar("H", bound=Callable[..., Any])

_ATTRIBUTE = "__faas_operation__"


@dataclass(frozen=True)
class Operation:
    """``answers``: status → the type of its JSON body (a model, ``list[Model]``, ...).
    ``errors``: the error statuses the handler itself can answer (each with ``ErrorBody``:
    404, 409, 502 and 503 from NATS or the store, ...); those of the guard (401, 403, 415) and
    of a body (400, 413) are added from the route's rule by ``gateway.openapi``. ``stream``: it
    also answers Server-Sent Events. ``media_type``: the 200 answer is text of this type (its
    body a string), not JSON."""

    summary: str
    answers: dict[int, Any]
    path: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    body: Any = None
    form: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    stream: bool = False
    tags: tuple[str, ...] = field(default=())
    description: str | None = None
    media_type: str | None = None


def documented(
    summary: str,
    *,
    answers: dict[int, Any],
    path: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    body: Any = None,
    form: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    stream: bool = False,
    tags: tuple[str, ...] = (),
    media_type: str | None = None,
) -> Callable[[H], H]:
    """Attach an :class:`Operation` to a handler (its docstring becomes the description)."""

    def attach(handler: H) -> H:
        op = Operation(
            summary=summary,
            answers=answers,
            path=path,
            query=query,
            body=body,
            form=form,
            errors=errors,
            stream=stream,
            tags=tags,
            description=handler.__doc__,
            media_type=media_type,
        )
        setattr(handler, _ATTRIBUTE, op)
        return handler

    return attach


def operation_of(handler: Callable[..., Any]) -> Operation | None:
    op = getattr(handler, _ATTRIBUTE, None)
    return op if isinstance(op, Operation) else None
