"""An invocation as published on ``<prefix>.invoke.rt.<runtime>``.

The minimal message a NATS publisher sends is ``{"function": "dice", "params": {...}}``.
The gateway also sets ``id``, ``version`` and ``created_at``.

A publisher that waits for the result may set the header :data:`REPLY_TO` to a subject under
:data:`REPLY_PREFIX`: the agent that ran the call publishes its ``finished`` event there too
(core NATS, at most once, before the durable copy reaches the events stream). It is a
shortcut, not a guarantee: the events stream keeps the durable ``finished`` event. Any
publisher sets this header, so an agent publishes only to reply subjects (``_INBOX.…``, where
NATS clients take their replies), never to a subject a publisher chose (``$JS.API.…``); its
NATS user may publish nowhere else either (common/natsauth.py).
"""

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from schemas.names import CALL_ID_PATTERN, NAME_PATTERN

REPLY_TO = "Faas-Reply-To"
# The only subjects a reply-to header may name: NATS inboxes (nats-py, the nats CLI, nats.go).
REPLY_PREFIX = "_INBOX."


class Invocation(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str | None = Field(default=None, pattern=CALL_ID_PATTERN)
    function: str = Field(pattern=NAME_PATTERN, validation_alias=AliasChoices("function", "funcName"))
    version: int | None = Field(default=None, ge=1)
    params: Any = Field(default_factory=dict)
    # Lower the function's timeout for this call; never raises it.
    timeout_s: float | None = Field(default=None, gt=0)
    created_at: datetime | None = None
    # When the call ends, its result is POSTed here (retried with backoff).
    callback_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
