"""common.events.last_event on a real nats-server: the last event of one kind about a call
or job, decoded; None when there is none; an unreadable one is an error naming its subject."""

import pytest
from nats.aio.client import Client

from common.events import last_event
from schemas import CallStatus, Finished, InvalidMessage, JobStarted, Layout, Started, encode


async def test_the_last_event_of_the_kind_asked_for(nc: Client, layout: Layout) -> None:
    js = nc.jetstream()
    assert await last_event(js, layout, "c1", Started) is None
    for node in ("n1", "n2"):
        await js.publish(layout.event("c1", "started"), encode(Started(call_id="c1", number=1, node=node)))
    await js.publish(layout.event("c2", "started"), encode(Started(call_id="c2", number=2, node="n3")))

    started = await last_event(js, layout, "c1", Started)
    assert started is not None and (started.call_id, started.node) == ("c1", "n2")
    assert await last_event(js, layout, "c1", Finished) is None  # another kind


async def test_job_events_share_the_stream(nc: Client, layout: Layout) -> None:
    js = nc.jetstream()
    assert await last_event(js, layout, "j1", JobStarted) is None
    await js.publish(layout.event("j1", "job_started"), encode(JobStarted(job_id="j1", node="n1")))
    started = await last_event(js, layout, "j1", JobStarted)
    assert started is not None and started.node == "n1"


async def test_an_unreadable_event_is_an_error_naming_its_subject(nc: Client, layout: Layout) -> None:
    js = nc.jetstream()
    subject = layout.event("c1", "finished")
    await js.publish(subject, b"{not json")
    with pytest.raises(InvalidMessage, match=subject):
        await last_event(js, layout, "c1", Finished)
    await js.publish(subject, encode(Finished(call_id="c1", number=1, status=CallStatus.DONE, result=6)))
    finished = await last_event(js, layout, "c1", Finished)
    assert finished is not None and finished.result == 6
