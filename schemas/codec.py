"""Encoding and decoding of NATS payloads, with one error type for bad input."""

import json
import math
import re
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


# How deep JSON arrays and objects may nest in params and results: pydantic's JSON reader and
# writer stop a little past 200 levels, and a message must decode wherever it goes.
MAX_JSON_DEPTH = 100
# A \uD800-\uDFFF escape in JSON text: a lone one (not half of a pair) cannot be encoded again.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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
    """Any JSON value (function params and results travel as free-form JSON) that can travel
    on: nested at most :data:`MAX_JSON_DEPTH` deep, with no lone UTF-16 surrogate escape
    (``"\\ud800"``: Python reads it, but no UTF-8 encoder writes it), and no number JSON does
    not have (``NaN``, ``Infinity``, or ``1e400``, which Python reads as infinity): pydantic would
    write each as ``null``."""
    try:
        value = _DECODER.decode(data if isinstance(data, str) else data.decode(json.detect_encoding(data)))
    except RecursionError:
        raise InvalidMessage(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidMessage(f"invalid JSON: {err}") from None
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth_over(value, MAX_JSON_DEPTH):
        raise InvalidMessage(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    if _HUGE_NUMBER.search(raw) and _any_infinite(value):
        raise InvalidMessage("invalid JSON: a number too large for a 64-bit float")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            encode_json(value)
        except UnicodeEncodeError:
            raise InvalidMessage("invalid JSON: a lone UTF-16 surrogate escape (\\ud800-\\udfff)") from None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
# A number that may overflow a float: a 3-digit exponent, or 309 digits in a row.
_HUGE_NUMBER = re.compile(rb"[eE][+]?0*[1-9][0-9]{2}|[0-9]{309}")


def _any_infinite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and math.isinf(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _depth_over(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep (without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
