"""Encoding and decoding of NATS payloads, with one error type for bad input."""

import json
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class InvalidMessage(ValueError):
    """A payload that is not valid JSON or does not match its model."""


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "(body)"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()


def decode(model: type[M], data: bytes | str) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise InvalidMessage(f"invalid JSON: {err.errors()[0]['msg']}") from None
        raise InvalidMessage(_describe(err)) from None


def decode_as(adapter: TypeAdapter[T], data: bytes | str) -> T:
    try:
        return adapter.validate_json(data)
    except ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise InvalidMessage(f"invalid JSON: {err.errors()[0]['msg']}") from None
        raise InvalidMessage(_describe(err)) from None


def decode_json(data: bytes | str) -> Any:
    """Any JSON value (function params and results travel as free-form JSON)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidMessage(f"invalid JSON: {err}") from None


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
