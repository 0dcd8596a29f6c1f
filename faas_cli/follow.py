"""Following a call's or job's output live (the gateway's Server-Sent Events), and waiting
for its record to show the end."""

import asyncio
from typing import Any

from faas_cli.client import Client, GatewayError, seg
from faas_cli.render import Renderer

TERMINAL = frozenset({"DONE", "FINISHED", "ERROR", "TIMEOUT", "CANCELLED"})
# After the stream's ``end`` the store may still be writing the record: ask again, a little.
RECORD_PATIENCE_S = 10.0


async def follow(
    client: Client, render: Renderer, kind: str, id: str, all_to_stderr: bool = False
) -> dict[str, Any] | None:
    """Print every line of ``/v1/{kind}s/{id}/logs`` from the first until the run ends;
    returns the ``end`` event (``{"id","status"}``), or None if the stream closed without
    one (the gateway stopped: the run goes on)."""
    async for event, data in client.events(f"/v1/{kind}s/{seg(id)}/logs"):
        if event == "log":
            render.log_line(data, all_to_stderr)
        elif event == "end":
            return dict(data)
    return None


async def final_record(client: Client, kind: str, id: str) -> dict[str, Any]:
    """The record once it says the run ended (the store follows the events a moment later:
    a call it has not stored yet is a 404 for that moment)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECORD_PATIENCE_S
    while True:
        try:
            record: dict[str, Any] = await client.get(f"/v1/{kind}s/{seg(id)}")
        except GatewayError as err:
            if err.status != 404 or loop.time() > deadline:
                raise
        else:
            if record.get("status") in TERMINAL or loop.time() > deadline:
                return record
        await asyncio.sleep(0.1)
