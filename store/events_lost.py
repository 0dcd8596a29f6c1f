"""Telling when the events stream dropped events before the store took them.

The events stream discards its oldest events at its age and byte limits
(``common.jetstream.LayoutLimits``). Events the store has stored already are no loss; but a
store that lags behind (stopped, or held up by its database) past the limit never sees the
events deleted meanwhile: JetStream delivers the next one that is left, silently.

The store's consumer takes every subject of the stream, so its first deliveries come in
stream order with no gap unless events were deleted undelivered. :class:`LossWatch` keeps
the highest stream sequence first delivered to this store; when a delivery jumps past it,
it asks the stream where it now begins (one request, about as costly as an ack), and logs
``store.events_lost`` with the range that was gone before it was delivered. It also checks
once at start, from the consumer's last delivered sequence (a store that was down).

Several stores on one consumer share its deliveries, so each sees jumps (and asks the
stream once per batch): a range is only reported if the stream no longer holds it, which
needs the stream to have turned over within moments, i.e. stores at the limit already; the
count is then an upper bound.
"""

import logging
from collections.abc import Iterable

from nats.js import JetStreamContext

from common.logs import fields

log = logging.getLogger(__name__)


class LossWatch:
    def __init__(self, js: JetStreamContext, stream: str, consumer: str) -> None:
        self._js = js
        self._stream = stream
        self._consumer = consumer
        self._last: int | None = None
        # Events reported lost so far (an upper bound with several stores).
        self.lost = 0

    async def start(self) -> None:
        """From the consumer's last delivered sequence: report what went while no store ran."""
        try:
            info = await self._js.consumer_info(self._stream, self._consumer)
        except Exception as err:
            log.warning("store.events_lost.check_failed", extra=fields(error=repr(err)))
            return
        delivered = info.delivered.stream_seq if info.delivered is not None else None
        self._last = max(self._last or 0, delivered or 0)
        await self._check(None)

    async def saw(self, first_deliveries: Iterable[int]) -> None:
        """The stream sequences of a batch's first deliveries (redeliveries left out)."""
        seqs = list(first_deliveries)
        if not seqs:
            return
        low = min(seqs)
        if self._last is not None and low > self._last + 1:
            await self._check(low)
        self._last = max(self._last or 0, max(seqs))

    async def _check(self, next_seq: int | None) -> None:
        try:
            first = (await self._js.stream_info(self._stream)).state.first_seq
        except Exception as err:
            # Best effort: a NATS hiccup must not hold up the batch in hand.
            log.warning("store.events_lost.check_failed", extra=fields(error=repr(err)))
            return
        start = (self._last or 0) + 1
        end = first - 1 if next_seq is None else min(first, next_seq) - 1
        if end >= start:
            self.lost += end - start + 1
            log.error(
                "store.events_lost",
                extra=fields(
                    stream=self._stream,
                    from_seq=start,
                    to_seq=end,
                    count=end - start + 1,
                    why="deleted at the stream's age/byte limit before the store took them",
                ),
            )
        if next_seq is None:
            self._last = max(self._last or 0, first - 1)
