"""A call tree through a real nats-server and the store: nested calls' events carry
``parent`` and ``root``; ``store.calls.tree`` answers the tree of any of its calls."""

from datetime import timedelta

from nats.aio.client import Client

from schemas import Accepted, CallStatus, Finished, Layout, decode, encode
from schemas.tree import CallTree, GetTree
from store import StoreSettings
from tests.integration.store_fixtures import settings, stores  # noqa: F401 (fixtures)
from tests.integration.test_store_support import (
    T0,
    StoreFactory,
    ask,
    get_call,
    publish_any,
    service_error,
)


def finished(call_id: str, number: int, parent: str | None, root: str | None) -> Finished:
    at = T0 + timedelta(seconds=number)
    return Finished(
        call_id=call_id, number=number, at=at, function="fib", status=CallStatus.DONE, parent=parent, root=root
    )


async def test_the_tree_of_any_call_starts_at_its_root(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    events = [
        Accepted(call_id="r", number=1, at=T0, function="fib"),
        finished("a", 2, "r", "r"),
        finished("b", 3, "a", "r"),
        Accepted(call_id="c", number=4, at=T0, function="fib", parent="r", root="r"),  # still queued
        finished("r", 5, None, None),
        finished("other", 6, None, None),
    ]
    await publish_any(nc, layout, events)
    store = stores(settings, background_ingest=False)
    await store.start()
    await store.run_until_idle()
    assert (await get_call(nc, layout, id="b")).parent == "a"
    for key in ("r", "b"):
        msg = await ask(nc, layout.store_call_tree, encode(GetTree(id=key)))
        assert service_error(msg) is None, service_error(msg)
        tree = decode(CallTree, msg.data)
        assert tree.root == "r" and not tree.truncated
        assert [(c.id, c.parent, c.status) for c in tree.calls] == [
            ("r", None, CallStatus.DONE),
            ("a", "r", CallStatus.DONE),
            ("b", "a", CallStatus.DONE),
            ("c", "r", CallStatus.QUEUED),
        ]
    msg = await ask(nc, layout.store_call_tree, encode(GetTree(id="r", limit=2)))
    tree = decode(CallTree, msg.data)
    assert [c.id for c in tree.calls] == ["r", "a"] and tree.truncated
    msg = await ask(nc, layout.store_call_tree, encode(GetTree(id="nope")))
    assert service_error(msg) == ("404", "call nope not found")
