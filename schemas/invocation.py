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

Nested calls: a handler's ``faas.call`` makes its agent publish an ordinary invocation with
``parent`` (the calling call's id), ``root`` (the id of the call at the top of the tree),
``depth`` (the root is 0) and ``caller`` (the calling function: the identity the call is
made with, which the callee's allow-list was checked against). A call without ``parent`` is
the root of its own tree.
"""

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from schemas.names import CALL_ID_PATTERN, NAME_PATTERN

REPLY_TO = "Faas-Reply-To"
# The only subjects a reply-to header may name: NATS inboxes (nats-py, the nats CLI, nats.go).
REPLY_PREFIX = "_INBOX."
# The deepest a nested call may be in any configuration (an agent's max_depth is lower).
MAX_DEPTH = 1000


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
    # A nested call's place in its tree (see the module's docstring).
    parent: str | None = Field(default=None, pattern=CALL_ID_PATTERN)
    root: str | None = Field(default=None, pattern=CALL_ID_PATTERN)
    depth: int = Field(default=0, ge=0, le=MAX_DEPTH)
    caller: str | None = Field(default=None, pattern=NAME_PATTERN)

    @property
    def tree_root(self) -> str | None:
        """The id of the call at the top of this call's tree (its own id for a root)."""
        return self.root or self.id
