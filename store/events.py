"""What the store reads from the events stream: call events and job events, told apart by
their ``kind``, decoded in one pass through the schemas codec."""

from typing import Annotated, Any, Union, get_args

from pydantic import Field, TypeAdapter

from schemas import CallEvent, JobAccepted, JobEvent, JobFinished, JobStarted
from schemas.codec import decode_as


def _members(union: Any) -> tuple[type, ...]:
    # CallEvent / JobEvent are Annotated[A | B | ..., discriminator]: their first argument.
    return get_args(get_args(union)[0])


# One discriminated union over both contracts: a new kind added to either in schemas is
# picked up here without a change.
StoreEvent = CallEvent | JobEvent
_KINDS: Any = Union[(*_members(CallEvent), *_members(JobEvent))]
_ANY_EVENT: TypeAdapter[Any] = TypeAdapter(Annotated[_KINDS, Field(discriminator="kind")])


def decode_store_event(data: bytes | str) -> StoreEvent:
    """A call event or a job event; raises ``schemas.InvalidMessage``."""
    result: StoreEvent = decode_as(_ANY_EVENT, data)
    return result


def event_id(event: StoreEvent) -> str:
    """The call or job the event is about."""
    return event.job_id if isinstance(event, JobAccepted | JobStarted | JobFinished) else event.call_id
