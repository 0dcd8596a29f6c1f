"""Reading a call's or job's events back from the events stream.

Each kind of event has its own subject (``<prefix>.events.<id>.<kind>``), so the last event
of a kind is one read of the stream's last message on that subject.
"""

from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from schemas import InvalidMessage, Layout, decode

Event = TypeVar("Event", bound=BaseModel)


async def last_event(js: JetStreamContext, layout: Layout, call_id: str, model: type[Event]) -> Event | None:
    """The last ``model`` event (``Started``, ``JobFinished``...) of a call (or a job: they
    share the stream), None if there is none.

    Raises :class:`schemas.InvalidMessage` (naming the subject) if the stored payload is not
    a ``model``, and whatever NATS raises if the stream cannot be read.
    """
    subject = layout.event(call_id, model.model_fields["kind"].default)
    try:
        msg = await js.get_last_msg(layout.events_stream, subject)
    except NotFoundError:
        return None
    try:
        return decode(model, msg.data or b"")
    except InvalidMessage as err:
        raise InvalidMessage(f"{subject}: {err}") from None
