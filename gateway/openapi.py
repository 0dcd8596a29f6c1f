"""``GET /openapi.json``: the OpenAPI 3.1 description of the HTTP API, built once at start
from the route table and the :class:`gateway.apidoc.Operation` of each handler.

Every schema is pydantic's JSON Schema of the model the gateway validates or answers with
(``TypeAdapter.json_schemas``, definitions under ``#/components/schemas``): nothing is written
by hand beside the models. The error statuses each route can answer come from its handler's
declaration (404, 409, 502, 503, ...) plus its rule: 401/403 for a token (and the cross-site
check), 400/413/415 for a body, 415 for any state-changing route, and 400 everywhere (malformed
HTTP, ``gateway.http_protocol``).
"""

import inspect
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from gateway.access import Body, Right, Rule
from gateway.apidoc import Operation, operation_of
from schemas.http import ErrorBody

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{([^}/]+)}")
_SECURITY_SCHEME = "bearer"

_STATUS_TEXT = {
    400: "Bad request: the error names the parameter or field (or the HTTP request is malformed)",
    401: "No valid token (missing, unknown, revoked or expired)",
    403: "The token's role may not do this, or a cross-site request",
    404: "Not found",
    409: "Conflict with the current state",
    413: "The body or a part of it is over its limit",
    415: "The body's Content-Type is not the route's",
    502: "The store answered with an error",
    503: "NATS, JetStream or the store is unavailable (retry)",
    504: "No answer in time",
}

RouteRow = tuple[str, str, Any, Rule]


def build_openapi(routes: Iterable[RouteRow], title: str = "faas", version: str = "1") -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (method, path, handler, rule), or ValueError naming
    a route whose handler has no ``@documented``."""
    rows = [(m, p, operation_of(h), rule, h) for m, p, h, rule in routes]
    missing = [f"{m} {p} ({getattr(h, '__qualname__', h)})" for m, p, op, _, h in rows if op is None]
    if missing:
        raise ValueError("routes without @documented: " + ", ".join(missing))
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op, rule, _ in rows:
        assert op is not None
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, rule, schemas)
    errors = _error_responses(schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Serverless functions on NATS JetStream and Docker: the original route set "
            "and /v1. Every error answer is an ErrorBody.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.definitions(),
            "responses": errors,
            "securitySchemes": {
                _SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (faas_...): `faas up` writes an admin one to <data-dir>/admin.token",
                }
            },
        },
    }


class _Schemas:
    """Collects the types to describe; ``definitions()`` generates them all in one pass, so a
    model used by many routes is one component, and the operations' placeholders are filled."""

    def __init__(self) -> None:
        self._inputs: list[tuple[int, JsonSchemaMode, TypeAdapter[Any]]] = []
        self._slots: list[dict[str, Any]] = []
        self._adapters: dict[Any, TypeAdapter[Any]] = {}
        self._extra: dict[str, Any] = {}

    def add_definitions(self, defs: dict[str, Any]) -> None:
        """Definitions a parameter model's schema refers to (an enum, say)."""
        self._extra.update(defs)

    def ref(self, tp: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        """A schema object to be filled with ``tp``'s schema (a ``$ref`` for a model)."""
        slot: dict[str, Any] = {}
        adapter = self._adapters.get(tp)
        if adapter is None:
            adapter = self._adapters[tp] = TypeAdapter(tp)
        self._inputs.append((len(self._slots), mode, adapter))
        self._slots.append(slot)
        return slot

    def definitions(self) -> dict[str, Any]:
        defs: dict[str, Any] = dict(self._extra)
        if self._inputs:
            mapping, generated = TypeAdapter.json_schemas(self._inputs, ref_template=_REF)
            for (index, _mode), schema in mapping.items():
                self._slots[index].update(schema)
            defs.update(generated.get("$defs", {}))
        return dict(sorted(defs.items()))


def _operation(method: str, path: str, op: Operation, rule: Rule, schemas: _Schemas) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": op.summary,
        "tags": list(op.tags) or [_tag(path)],
    }
    if op.description:
        out["description"] = inspect.cleandoc(op.description)
    params = _parameters(path, op, schemas)
    if params:
        out["parameters"] = params
    body = _request_body(op, rule, schemas)
    if body is not None:
        out["requestBody"] = body
    out["responses"] = _responses(method, path, op, rule, schemas)
    out["security"] = [] if rule.right is Right.PUBLIC else [{_SECURITY_SCHEME: []}]
    return out


def _parameters(path: str, op: Operation, schemas: _Schemas) -> list[dict[str, Any]]:
    names = _PATH_PARAM.findall(path)
    declared = _model_params(op.path, "path", schemas) if op.path is not None else {}
    if sorted(declared) != sorted(names):
        raise ValueError(f"{path}: path model declares {sorted(declared)}, the path has {names}")
    params = [declared[n] for n in names]
    if op.query is not None:
        params.extend(_model_params(op.query, "query", schemas).values())
    return params


def _model_params(model: type[BaseModel], where: str, schemas: _Schemas) -> dict[str, dict[str, Any]]:
    """One parameter per field, its schema inline (parameters are scalars: no null branch)."""
    schema = model.model_json_schema(ref_template=_REF, mode="validation")
    schemas.add_definitions(schema.get("$defs", {}))
    required = set(schema.get("required", ()))
    params: dict[str, dict[str, Any]] = {}
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": where, "required": where == "path" or name in required}
        if description:
            param["description"] = description
        param["schema"] = prop
        params[name] = param
    return params


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    prop = dict(prop)
    if prop.get("default", ...) is None:
        del prop["default"]
    branches = prop.get("anyOf")
    if branches:
        kept = [b for b in branches if b.get("type") != "null"]
        if len(kept) == 1:
            del prop["anyOf"]
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept
    return prop


def _request_body(op: Operation, rule: Rule, schemas: _Schemas) -> dict[str, Any] | None:
    if op.form is not None:
        return {"required": True, "content": {Body.MULTIPART.value: {"schema": schemas.ref(op.form, "validation")}}}
    if op.body is not None:
        required = rule.body is Body.JSON and op.body is not Any
        return {"required": required, "content": {Body.JSON.value: {"schema": schemas.ref(op.body, "validation")}}}
    return None


def _error_statuses(method: str, path: str, op: Operation, rule: Rule) -> set[int]:
    unknown = set(op.errors) - set(_STATUS_TEXT)
    if unknown:
        raise ValueError(f"error statuses without a description: {sorted(unknown)}")
    # 400: also what any route answers to malformed HTTP (gateway/http_protocol.py); 503:
    # while NATS is away (gateway/outage.py; /healthz says so itself).
    statuses = set(op.errors) | {400}
    if path != "/openapi.json":
        statuses.add(503)
    if rule.right is not Right.PUBLIC:
        statuses |= {401, 403}
    if rule.body is not Body.NONE:
        statuses |= {400, 413, 415}
    elif method in ("POST", "PUT", "PATCH", "DELETE"):
        statuses.add(415)  # a body sent anyway must be JSON
    return statuses


def _responses(method: str, path: str, op: Operation, rule: Rule, schemas: _Schemas) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, tp in sorted(op.answers.items()):
        content: dict[str, Any] = {"application/json": {"schema": schemas.ref(tp, "serialization")}}
        if op.media_type is not None and status == 200:
            content = {op.media_type: {"schema": {"type": "string"}}}
        if op.stream and status == 200:
            content["text/event-stream"] = {"schema": {"type": "string", "description": "Server-Sent Events"}}
        out[str(status)] = {"description": _answer_text(status), "content": content}
    for status in sorted(_error_statuses(method, path, op, rule)):
        out[str(status)] = {"$ref": f"#/components/responses/{_error_name(status)}"}
    return out


def _error_name(status: int) -> str:
    return f"Error{status}"


def _error_responses(schemas: _Schemas) -> dict[str, Any]:
    """One response object per error status, shared by the routes (all an ErrorBody)."""
    return {
        _error_name(status): {
            "description": text,
            "content": {"application/json": {"schema": schemas.ref(ErrorBody, "serialization")}},
        }
        for status, text in sorted(_STATUS_TEXT.items())
    }


def _answer_text(status: int) -> str:
    return {200: "OK", 201: "Created", 202: "Accepted: going on"}.get(status, "OK")


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[{}]", "", path).strip("/").replace("/", "_").replace("-", "_") or "root"
    return f"{method.lower()}_{words}"


def _tag(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[0] == "v1" and len(parts) > 1:
        return parts[1]
    return "meta" if path in ("/healthz", "/openapi.json", "/metrics") else "legacy"
