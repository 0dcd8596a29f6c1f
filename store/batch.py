"""One batch of events as the writer applies it: what to read, and what to write back.

Pure (no I/O), so that both database paths (:mod:`store.sqlite_writer`, in a thread, and
:mod:`store.postgres_writer`, on the event loop) run the same rules between their read and
their write: every event of a record in the batch is folded in memory (:mod:`schemas.fold`,
:mod:`store.job_merge`) into the stored row, and only rows that end up different are
written, whole, in one upsert per table.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import JobAccepted, JobFinished, JobStarted, Logs
from schemas.fold import RecordEvent, merge_all
from store.events import StoreEvent
from store.job_merge import JobState, merge_jobs
from store.log_lines import encode_lines
from store.rows import job_to_values, record_to_values, row_to_job, row_to_record
from store.sql import Row

# schemas.JobEvent is an annotated union: isinstance needs the plain one.
JobEvent = JobAccepted | JobStarted | JobFinished


@dataclass
class Batch:
    """The events of one transaction, by kind, in their order."""

    calls: list[RecordEvent] = field(default_factory=list)
    jobs: list[JobEvent] = field(default_factory=list)
    chunks: list[Logs] = field(default_factory=list)

    @classmethod
    def of(cls, events: Sequence[StoreEvent]) -> "Batch":
        batch = cls()
        for event in events:
            if isinstance(event, Logs):
                batch.chunks.append(event)
            elif isinstance(event, JobAccepted | JobStarted | JobFinished):
                batch.jobs.append(event)
            else:
                batch.calls.append(event)
        return batch

    def call_ids(self) -> list[str]:
        return list(dict.fromkeys(e.call_id for e in self.calls))

    def job_ids(self) -> list[str]:
        return list(dict.fromkeys(e.job_id for e in self.jobs))

    def calls_to_write(self, stored: Mapping[str, Row]) -> list[Row]:
        """The call rows that the batch creates or changes, whole, with ``updated_at``."""
        records = {i: row_to_record(row) for i, row in stored.items()}
        merge_all(records, self.calls)
        now = datetime.now(UTC)
        return changed_rows(stored, (record_to_values(r) for r in records.values()), {"updated_at": now})

    def jobs_to_write(self, stored: Mapping[str, Row]) -> list[Row]:
        """The job rows that the batch creates or changes, whole."""
        states: dict[str, JobState] = {i: row_to_job(row) for i, row in stored.items()}
        merge_jobs(states, self.jobs)
        return changed_rows(stored, (job_to_values(s) for s in states.values()))

    def chunk_rows(self) -> list[Row]:
        """One row per log chunk; within the batch the first copy of a chunk counts."""
        fresh = {(e.call_id, e.attempt, e.seq): e for e in reversed(self.chunks)}
        return [_chunk_row(e) for e in reversed(fresh.values())]


def changed_rows(stored: Mapping[str, Row], rows: Iterable[Row], extra: Mapping[str, Any] | None = None) -> list[Row]:
    """The rows that are new or differ from the stored ones, with ``extra`` added (the
    writer's bookkeeping, e.g. ``updated_at``: written, not compared)."""
    extra = extra or {}
    out: list[Row] = []
    for values in rows:
        before = stored.get(values["id"])
        if before is None or any(before[k] != v for k, v in values.items()):
            out.append({**values, **extra})
    return out


def _chunk_row(event: Logs) -> Row:
    lines = encode_lines(event.lines)
    return {
        "id": event.call_id,
        "attempt": event.attempt,
        "seq": event.seq,
        "at": event.at,
        "lines": lines.decode(),
        # "[a,b]" -> each line plus one separator: len - 2 + 1.
        "nbytes": len(lines) - 1 if event.lines else 0,
        "truncated": event.truncated,
    }
