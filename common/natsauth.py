"""NATS users and what each may publish and subscribe to: the one definition.

Every kind of client has a NATS user of its own with only the subjects it needs, all derived
from the :class:`~schemas.Layout` names:

* ``gateway``: creates and updates the layout (streams, KV buckets, the object store: never
  deletes one), publishes invocations, jobs and its events, reads and writes the runtimes,
  functions, cancels and tokens buckets and the artifacts, reads the nodes bucket and the
  events stream, consumes callback events, asks the store, answers ``<prefix>.call.*`` and
  ``<prefix>.cancel.*``.
* ``agent``: consumes the invoke stream (its durable consumers; deletes a dead node's),
  moves rescued calls back to runtime subjects, publishes events, reads the runtimes,
  functions and cancels buckets and the artifacts, keeps its heartbeat in the nodes bucket,
  answers a sync call on its reply subject (``_INBOX.…`` only), and asks for a cancel
  (``<prefix>.cancel.<call_id>``) of the nested calls a cancelled call leaves. It may not create,
  update, purge or delete a stream, and cannot read the tokens bucket.
* ``store``: consumes the events stream and answers ``<prefix>.store.*`` requests.
* ``invoker``: for ``nats pub`` / ``nats req`` publishers: publishes invocations on
  ``<prefix>.invoke.rt.<runtime>``, requests on ``<prefix>.call.<function>`` and cancels on
  ``<prefix>.cancel.<call_id>``, and takes replies in ``_INBOX.…``. Nothing else: no events,
  no buckets, no JetStream API.
* ``admin``: everything (an operator's ``nats`` CLI, the tests' own client).

Replies: a request's reply subject is an inbox of the requester, which must be able to
subscribe to it. Each service's client takes its replies under ``_INBOX.<user>.``
(:func:`inbox_prefix`) and may subscribe there only; an invoker's ``nats`` CLI uses plain
``_INBOX.<id>`` and may subscribe to ``_INBOX.>`` except the services' inboxes (nats-server
drops a message on a denied subject even for a wildcard subscription), so an invoker cannot
read what JetStream or the store answers the services. The services that answer requests
(gateway, store) publish their answers through ``allow_responses`` (only to the reply
subject of a request they received, once, within a time), not through a publish right on
``_INBOX.>``.

Only the gateway (and admin) may create the layout; the agent and the store wait for what
they use (``common.jetstream.wait_layout``), so any service may still come up first.

``python -m common.natsauth [--prefix faas]`` prints the permissions as JSON. The embedded
server of ``faas up`` and the tests (common/natsconf.py) and the Ansible deployment
(``python -m common.natsconf authorization`` on each NATS host) take them from here.
"""

import argparse
import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import REPLY_PREFIX, Layout

GATEWAY = "gateway"
AGENT = "agent"
STORE = "store"
INVOKER = "invoker"
ADMIN = "admin"
USERS = (GATEWAY, AGENT, STORE, INVOKER, ADMIN)
# Users whose clients take their replies under an inbox of their own.
PRIVATE_INBOXES = (GATEWAY, AGENT, STORE, ADMIN)

API = "$JS.API"


def inbox_prefix(user: str | None) -> str:
    """The inbox prefix of a client of ``user`` (``_INBOX.gateway``...); the library's own
    ``_INBOX`` for a client without a user."""
    return f"{REPLY_PREFIX}{user}" if user else REPLY_PREFIX.rstrip(".")


@dataclass(frozen=True)
class Permissions:
    """One user's subjects, as nats-server's ``permissions`` block takes them: a subject is
    allowed when an allow entry matches it and no deny entry does."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    # May publish one answer to the reply subject of a request it received, within this
    # long (a Go duration); None: may not.
    responses_within: str | None = None

    def __post_init__(self) -> None:
        # Each subject once, in order (the per-stream helpers overlap: STREAM.INFO...).
        for name in ("publish", "subscribe", "publish_deny", "subscribe_deny"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))

    def server_block(self) -> dict[str, Any]:
        """The ``permissions`` value of this user in nats-server's configuration."""
        block: dict[str, Any] = {
            "publish": _allow_deny(self.publish, self.publish_deny),
            "subscribe": _allow_deny(self.subscribe, self.subscribe_deny),
        }
        if self.responses_within is not None:
            block["allow_responses"] = {"max": 1, "expires": self.responses_within}
        return block


def _allow_deny(allow: tuple[str, ...], deny: tuple[str, ...]) -> dict[str, list[str]]:
    block = {"allow": list(allow)}
    if deny:
        block["deny"] = list(deny)
    return block


# --- the JetStream API, per stream ------------------------------------------------------


def kv_stream(bucket: str) -> str:
    """The stream behind a KV bucket."""
    return f"KV_{bucket}"


def object_stream(bucket: str) -> str:
    """The stream behind an object store."""
    return f"OBJ_{bucket}"


def layout_streams(layout: Layout) -> tuple[str, ...]:
    """Every stream of the layout, KV buckets and the object store included."""
    return (
        layout.invoke_stream,
        layout.events_stream,
        kv_stream(layout.runtimes_bucket),
        kv_stream(layout.functions_bucket),
        kv_stream(layout.nodes_bucket),
        kv_stream(layout.cancels_bucket),
        kv_stream(layout.tokens_bucket),
        object_stream(layout.artifacts_bucket),
    )


def agent_streams(layout: Layout) -> list[str]:
    """The streams an agent uses (and waits for: it may not create them)."""
    return [
        layout.invoke_stream,
        layout.events_stream,
        kv_stream(layout.runtimes_bucket),
        kv_stream(layout.functions_bucket),
        kv_stream(layout.nodes_bucket),
        kv_stream(layout.cancels_bucket),
        object_stream(layout.artifacts_bucket),
    ]


def _manage(streams: tuple[str, ...]) -> list[str]:
    """Create a stream or bring its configuration up to date; never delete or purge it."""
    return [f"{API}.STREAM.{op}.{s}" for s in streams for op in ("CREATE", "UPDATE", "INFO")]


def _read(stream: str) -> list[str]:
    """Read a stream: its info, single messages, and consumers of it (ordered consumers for
    KV watches, history and object reads; durable pull consumers), acks and flow control."""
    return [
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.>",
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"{API}.CONSUMER.INFO.{stream}.>",
        f"{API}.CONSUMER.DELETE.{stream}.>",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def _read_objects(bucket: str) -> list[str]:
    """Read an object store. nats-py's ``ObjectStore.get`` looks up the stream of the chunk
    subject by name (``STREAM.NAMES``: stream names only, no content)."""
    return [*_read(object_stream(bucket)), f"{API}.STREAM.NAMES"]


def _read_kv(bucket: str) -> list[str]:
    return _read(kv_stream(bucket))


def _write_kv(bucket: str) -> list[str]:
    """Put, delete and purge keys: all of them publishes on the bucket's subjects."""
    return [f"$KV.{bucket}.>"]


def _forbidden(stream: str) -> list[str]:
    """Any JetStream API request naming ``stream`` (``$JS.API.<op>.<stream>…``,
    ``$JS.API.<op>.<op>.<stream>…``, ``$JS.API.CONSUMER.DURABLE.CREATE.<stream>.…``)."""
    return [
        f"{API}.*.*.{stream}",
        f"{API}.*.*.{stream}.>",
        f"{API}.*.*.*.{stream}.>",
    ]


def _no_stream_admin() -> list[str]:
    return [f"{API}.STREAM.{op}.>" for op in ("CREATE", "UPDATE", "DELETE", "PURGE")]


def _no_tokens(layout: Layout) -> list[str]:
    return [*_forbidden(kv_stream(layout.tokens_bucket)), f"$KV.{layout.tokens_bucket}.>"]


# --- the users ----------------------------------------------------------------------------


def permissions(layout: Layout) -> dict[str, Permissions]:
    """Every user's permissions for one installation (one prefix)."""
    p = layout.prefix
    invoke, events = layout.invoke_stream, layout.events_stream
    artifacts = layout.artifacts_bucket
    srv = "$SRV.>"  # nats.micro discovery: PING, INFO, STATS

    gateway = Permissions(
        publish=(
            f"{p}.invoke.>",
            f"{p}.events.>",
            f"{p}.store.>",
            *_manage(layout_streams(layout)),
            *_read(events),
            # Queue depth per runtime and node (gateway/metrics.py): the invoke consumers' info.
            f"{API}.CONSUMER.INFO.{invoke}.>",
            *(
                s
                for b in (layout.runtimes_bucket, layout.functions_bucket, layout.cancels_bucket, layout.tokens_bucket)
                for s in (*_read_kv(b), *_write_kv(b))
            ),
            *_read_kv(layout.nodes_bucket),
            *_read_objects(artifacts),
            f"$O.{artifacts}.>",
            # Replacing an object purges its old chunks.
            f"{API}.STREAM.PURGE.{object_stream(artifacts)}",
        ),
        publish_deny=(f"{API}.STREAM.DELETE.>",),
        subscribe=(f"{inbox_prefix(GATEWAY)}.>", f"{p}.call.*", f"{p}.cancel.*", srv),
        # A `nats req <prefix>.call.<function>` is answered when the call ends, up to the
        # gateway's sync wait (30 s by default, FAAS_GATEWAY_SYNC_WAIT_S): nats-server's
        # default of 2 minutes could refuse a late answer.
        responses_within="1h",
    )
    agent = Permissions(
        publish=(
            # Rescue moves a dead node's calls back to their runtime's subject.
            f"{p}.invoke.rt.>",
            f"{p}.events.>",
            # A sync call's finished event, to the reply subject its publisher named.
            f"{REPLY_PREFIX}>",
            # Cancel requests (answered by a gateway) for nested calls their parent left.
            f"{p}.cancel.*",
            *_read(invoke),
            f"{API}.CONSUMER.LIST.{invoke}",
            f"{API}.STREAM.INFO.{events}",
            f"{API}.STREAM.MSG.GET.{events}",
            *_read_kv(layout.runtimes_bucket),
            *_read_kv(layout.functions_bucket),
            *_read_kv(layout.cancels_bucket),
            *_read_kv(layout.nodes_bucket),
            *_write_kv(layout.nodes_bucket),
            *_read_objects(artifacts),
        ),
        publish_deny=(*_no_stream_admin(), *_no_tokens(layout)),
        # The job intake wakes up on job publications.
        subscribe=(f"{inbox_prefix(AGENT)}.>", f"{p}.invoke.job.*"),
        subscribe_deny=(f"$KV.{layout.tokens_bucket}.>",),
    )
    store = Permissions(
        publish=(*_read(events),),
        publish_deny=(*_no_stream_admin(), *_no_tokens(layout)),
        subscribe=(f"{inbox_prefix(STORE)}.>", f"{p}.store.>", srv),
        subscribe_deny=(f"$KV.{layout.tokens_bucket}.>",),
        responses_within="2m",
    )
    invoker = Permissions(
        publish=(f"{p}.invoke.rt.>", f"{p}.call.>", f"{p}.cancel.*"),
        subscribe=(f"{REPLY_PREFIX}>",),
        subscribe_deny=tuple(f"{inbox_prefix(u)}.>" for u in PRIVATE_INBOXES),
    )
    admin = Permissions(publish=(">",), subscribe=(">",))
    return {GATEWAY: gateway, AGENT: agent, STORE: store, INVOKER: invoker, ADMIN: admin}


# --- passwords ----------------------------------------------------------------------------


def new_password() -> str:
    """256 random bits: nothing to guess, so a cheap hash in the server's config is enough."""
    return secrets.token_urlsafe(32)


def password_file(directory: Path, user: str) -> Path:
    return directory / f"{user}.password"


def ensure_passwords(directory: Path) -> dict[str, str]:
    """Each user's password from ``<directory>/<user>.password``; a missing one is made.

    The directory is made private (0700) and each file is written 0600, created with that
    mode (never readable by others, not even for an instant)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    passwords: dict[str, str] = {}
    for user in USERS:
        path = password_file(directory, user)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new_password() + "\n")
        path.chmod(0o600)
        passwords[user] = path.read_text().strip()
        if not passwords[user]:
            raise ValueError(f"{path} is empty")
    return passwords


def users_from(passwords: Mapping[str, str]) -> dict[str, str]:
    """Only the known users' passwords, every one of them required."""
    missing = [u for u in USERS if not passwords.get(u)]
    if missing:
        raise ValueError(f"no password for the NATS user(s) {', '.join(missing)}")
    return {u: passwords[u] for u in USERS}


def permissions_json(layout: Layout) -> dict[str, Any]:
    """The permissions as plain data (what ``python -m common.natsauth`` prints)."""
    return {user: perms.server_block() for user, perms in permissions(layout).items()}


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.natsauth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default="faas", help="NATS prefix of the installation")
    args = parser.parse_args(argv)
    json.dump(permissions_json(Layout(args.prefix)), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
