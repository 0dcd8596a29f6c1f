"""``GET /openapi.json``: generated from the route table and the handlers' ``@documented``
models, so that a route cannot be served without being described."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web

from gateway.access import Body, Right, Rule
from gateway.apidoc import documented
from gateway.openapi import build_openapi
from gateway.routes import PAGES, ROUTES, add_routes
from gateway.routes.openapi import OPENAPI
from schemas import CallQuery, JobSpec, RuntimeSpec
from schemas.http import ErrorBody, NamePath


@pytest.fixture(scope="module")
def app() -> web.Application:
    app = web.Application()
    add_routes(app)
    return app


@pytest.fixture(scope="module")
def spec(app: web.Application) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(app[OPENAPI])
    return loaded


def test_every_route_the_router_serves_is_described(app: web.Application, spec: dict[str, Any]) -> None:
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    described = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    # The dashboard's static files are not part of the API.
    pages = {(method.lower(), path.replace("{path:.+}", "{path}")) for method, path, _, _ in PAGES}
    assert served == described | pages and not described & pages
    assert len(served) == len(ROUTES) + len(PAGES)


async def _undocumented(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_without_documented_stops_the_build() -> None:
    with pytest.raises(ValueError, match=r"GET /v1/nope \(_undocumented\)"):
        build_openapi([*ROUTES, ("GET", "/v1/nope", _undocumented, Rule(Right.READ))])


def test_a_path_model_must_name_the_path_parameters() -> None:
    handler = documented("x", path=NamePath, answers={200: str})(_undocumented)
    with pytest.raises(ValueError, match="path model"):
        build_openapi([("GET", "/v1/things/{id}", handler, Rule(Right.READ))])


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    refs = set(_refs(spec))
    assert refs
    for ref in refs:
        section, name = ref.removeprefix("#/components/").split("/")
        assert name in spec["components"][section], ref


def test_schemas_are_the_models_json_schema(spec: dict[str, Any]) -> None:
    """Not written by hand: pydantic's own schema of the model the gateway validates with."""
    components = spec["components"]["schemas"]
    for model in (RuntimeSpec, JobSpec, ErrorBody):
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        own.pop("$defs", None)
        assert components[model.__name__] == own


def test_query_parameters_come_from_the_query_model(spec: dict[str, Any]) -> None:
    params = {p["name"]: p for p in spec["paths"]["/v1/calls"]["get"]["parameters"]}
    assert set(params) == set(CallQuery.model_fields)
    assert params["limit"]["schema"] == {"default": 50, "maximum": 1000, "minimum": 1, "type": "integer"}
    invoke = {p["name"] for p in spec["paths"]["/v1/functions/{name}/invoke"]["post"]["parameters"]}
    assert invoke == {"name", "async", "wait", "timeout", "callback_url"}


def test_every_error_answer_is_an_error_body(spec: dict[str, Any]) -> None:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    name = answer["$ref"].rsplit("/", 1)[-1]
                    schema = spec["components"]["responses"][name]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


def test_rules_add_their_errors_and_security(spec: dict[str, Any]) -> None:
    for method, path, _, rule in ROUTES:
        op = spec["paths"][path][method.lower()]
        statuses = set(op["responses"])
        if rule.right is Right.PUBLIC:
            assert op["security"] == [] and not statuses & {"401", "403"}
        else:
            assert op["security"] == [{"bearer": []}] and {"401", "403"} <= statuses
        if rule.body is not Body.NONE:
            assert {"400", "413", "415"} <= statuses
            assert rule.body.value in op["requestBody"]["content"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_uploads_are_multipart_with_a_binary_module(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/v1/functions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert form["properties"]["module"]["format"] == "binary"
    assert set(form["required"]) == {"name", "runtime", "module"}


def test_schemathesis_loads_every_operation(spec: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(ROUTES)


def test_metrics_are_described_as_prometheus_text_behind_a_token(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/metrics"]["get"]
    assert op["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert {"401", "403"} <= set(op["responses"])
    assert op["tags"] == ["meta"]
