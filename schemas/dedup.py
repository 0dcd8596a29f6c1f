"""Message ids (the ``Nats-Msg-Id`` header) of what the services publish to JetStream.

A stream stores a message once per id within its duplicate window (two minutes): a publish
retried after a lost PubAck, or the same event published again for a redelivered message,
is not stored twice. The ids are part of the wire contract: services of different versions
must build the same id for the same message, so these strings never change.

``item_id`` below is a call id or a job id (both ``[A-Za-z0-9_-]``); ``attempt`` is the
delivery count of the invocation or job message that the event belongs to.
"""

MSG_ID = "Nats-Msg-Id"


def header(msg_id: str) -> dict[str, str]:
    """The headers of a publish with this message id."""
    return {MSG_ID: msg_id}


# --- the invoke stream -------------------------------------------------------------------
def invocation(call_id: str) -> str:
    """An invocation is stored once per call id."""
    return call_id


def rescued(call_id: str, delivered: int) -> str:
    """An invocation moved from a dead node's subject back to its runtime's, from its
    ``delivered``-th delivery there (each delivery may move it once)."""
    return f"{call_id}-rescued-{delivered}"


def job(job_id: str) -> str:
    """A job message is stored once per job id."""
    return job_id


# --- the events stream: calls ------------------------------------------------------------
def accepted(call_id: str) -> str:
    return f"{call_id}.accepted"


def started(call_id: str, attempt: int) -> str:
    return f"{call_id}.started.{attempt}"


def finished(call_id: str, attempt: int) -> str:
    """A ``finished`` event of a call that an agent ends without running it (rescue). The
    agent's own ``finished`` of a call it ran has no id: the store keeps the first final
    event of a call whatever comes after it."""
    return f"{call_id}.finished.{attempt}"


def call_cancelled(call_id: str) -> str:
    """The ``finished`` event a gateway publishes for a call cancelled while queued."""
    return f"{call_id}.finished.cancel"


def call_cancelled_callback(call_id: str) -> str:
    """Its copy for the callback dispatcher (a call with a callback URL)."""
    return f"{call_id}.callback_due.cancel"


def log_chunk(item_id: str, attempt: int, seq: int) -> str:
    """A ``log`` event of a call or a job: chunk ``seq`` of one attempt."""
    return f"{item_id}.log.{attempt}.{seq}"


def callback(call_id: str) -> str:
    """The ``callback`` event: one per call, whichever gateway delivers it."""
    return f"{call_id}.callback"


# --- the events stream: jobs -------------------------------------------------------------
def job_accepted(job_id: str) -> str:
    return f"{job_id}.job_accepted"


def job_started(job_id: str, attempt: int) -> str:
    return f"{job_id}.job_started.{attempt}"


def job_finished(job_id: str, attempt: int) -> str:
    return f"{job_id}.job_finished.{attempt}"


def job_cancelled(job_id: str) -> str:
    """The ``job_finished`` event a gateway publishes for a job cancelled while queued."""
    return f"{job_id}.job_finished.cancel"
