"""When an object was stored, as the artifact sweep reads it from the object's meta (nats-py
writes Python's isoformat, nats.go RFC 3339 with nanoseconds); unreadable means "young"."""

from datetime import UTC, datetime

import pytest
from nats.js.api import ObjectInfo

from gateway.artifact_sweep import _stored_at


@pytest.mark.parametrize(
    ("mtime", "expected"),
    [
        ("2026-12-03T16:00:00.123456+00:00", datetime(2026, 12, 3, 16, 0, 0, 123456, tzinfo=UTC)),
        ("2026-12-03T16:00:00.123456789Z", datetime(2026, 12, 3, 16, 0, 0, 123456, tzinfo=UTC)),
        ("2026-12-03T16:00:00Z", datetime(2026, 12, 3, 16, 0, 0, tzinfo=UTC)),
        ("2026-12-03T16:00:00", datetime(2026, 12, 3, 16, 0, 0, tzinfo=UTC)),
        ("", None),
        ("yesterday", None),
    ],
)
def test_stored_at_reads_both_clients_timestamps(mtime: str, expected: datetime | None) -> None:
    info = ObjectInfo(name="x", bucket="b", nuid="n", mtime=mtime)
    assert _stored_at(info) == expected
