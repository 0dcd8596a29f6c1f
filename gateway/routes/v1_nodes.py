"""``/v1/nodes``: the node agents' last heartbeats (slots, free slots, warm containers)."""

from datetime import UTC, datetime

from aiohttp import web

from gateway.apidoc import documented
from gateway.deps import deps
from gateway.web import json_response, model_json
from schemas.http import NodeView


@documented("Every node agent with a heartbeat in the nodes bucket", answers={200: list[NodeView]})
async def list_all(request: web.Request) -> web.Response:
    """From the gateway's mirror of the nodes bucket: no NATS round trip. A node that stopped
    beating stays listed, not fresh, until its heartbeat's TTL removes it."""
    now = datetime.now(UTC)
    views = [
        NodeView(**node.model_dump(), fresh=fresh, age_s=round((now - node.at).total_seconds(), 3))
        for node, fresh in deps(request).router.nodes()
    ]
    return json_response([model_json(v) for v in views])
