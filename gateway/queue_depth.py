"""How many invocations wait in the invoke stream, per subject: one runtime's queue, the work
routed to one node, one job priority. Read from the stream's info with a subject filter (one
JetStream API request, the same permission the gateway has for provisioning the stream)."""

from nats.js import JetStreamContext

from gateway.errors import nats_unavailable
from schemas import Layout
from schemas.stats import QueueDepth


async def queue_depths(js: JetStreamContext, layout: Layout) -> list[QueueDepth]:
    """Every subject of the invoke stream holding messages: waiting, or running and not yet
    acknowledged (a work-queue stream removes a message at its ack). Sorted by kind and name."""
    with nats_unavailable("the invoke stream"):
        info = await js.stream_info(layout.invoke_stream, subjects_filter=layout.invoke_all)
    prefix = f"{layout.prefix}.invoke."
    depths = []
    for subject, count in (info.state.subjects or {}).items():
        kind, _, name = subject.removeprefix(prefix).partition(".")
        kind = {"rt": "runtime"}.get(kind, kind)
        depths.append(QueueDepth(subject=subject, kind=kind, name=name, messages=count))
    return sorted(depths, key=lambda d: (d.kind, d.name))
